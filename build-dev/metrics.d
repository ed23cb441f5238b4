build-dev/metrics.o: proxy/metrics.c proxy/metrics.h proxy/config.h \
 proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h proxy/secret.h \
 proxy/reason.h proxy/oauth2.h
proxy/metrics.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/reason.h:
proxy/oauth2.h:
