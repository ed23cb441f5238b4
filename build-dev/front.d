build-dev/front.o: proxy/front.c proxy/front.h proxy/buffer.h \
 proxy/negotiate.h proxy/proto.h proxy/reason.h proxy/line.h \
 proxy/neg_impl.h proxy/login.h
proxy/front.h:
proxy/buffer.h:
proxy/negotiate.h:
proxy/proto.h:
proxy/reason.h:
proxy/line.h:
proxy/neg_impl.h:
proxy/login.h:
