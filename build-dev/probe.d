build-dev/probe.o: proxy/probe.c proxy/probe.h proxy/config.h \
 proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h proxy/secret.h \
 proxy/buffer.h proxy/negotiate.h proxy/reason.h proxy/oauth2.h \
 proxy/tls.h
proxy/probe.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/buffer.h:
proxy/negotiate.h:
proxy/reason.h:
proxy/oauth2.h:
proxy/tls.h:
