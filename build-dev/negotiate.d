build-dev/negotiate.o: proxy/negotiate.c proxy/negotiate.h proxy/buffer.h \
 proxy/proto.h proxy/reason.h proxy/line.h proxy/neg_impl.h proxy/login.h
proxy/negotiate.h:
proxy/buffer.h:
proxy/proto.h:
proxy/reason.h:
proxy/line.h:
proxy/neg_impl.h:
proxy/login.h:
