build-dev/listener.o: proxy/listener.c proxy/listener.h proxy/config.h \
 proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h proxy/secret.h \
 proxy/reason.h proxy/blocks.h proxy/clients.h proxy/negotiate.h \
 proxy/buffer.h proxy/session.h
proxy/listener.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/reason.h:
proxy/blocks.h:
proxy/clients.h:
proxy/negotiate.h:
proxy/buffer.h:
proxy/session.h:
