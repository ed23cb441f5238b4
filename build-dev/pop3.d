build-dev/pop3.o: proxy/pop3.c proxy/line.h proxy/neg_impl.h \
 proxy/negotiate.h proxy/buffer.h proxy/proto.h proxy/reason.h \
 proxy/login.h
proxy/line.h:
proxy/neg_impl.h:
proxy/negotiate.h:
proxy/buffer.h:
proxy/proto.h:
proxy/reason.h:
proxy/login.h:
