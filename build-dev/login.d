build-dev/login.o: proxy/login.c proxy/login.h proxy/buffer.h \
 proxy/proto.h proxy/reason.h proxy/line.h proxy/neg_impl.h \
 proxy/negotiate.h
proxy/login.h:
proxy/buffer.h:
proxy/proto.h:
proxy/reason.h:
proxy/line.h:
proxy/neg_impl.h:
proxy/negotiate.h:
