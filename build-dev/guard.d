build-dev/guard.o: proxy/guard.c proxy/guard.h proxy/buffer.h \
 proxy/proto.h proxy/line.h proxy/negotiate.h proxy/reason.h
proxy/guard.h:
proxy/buffer.h:
proxy/proto.h:
proxy/line.h:
proxy/negotiate.h:
proxy/reason.h:
