build-dev/tls.o: proxy/tls.c proxy/tls.h proxy/addr.h proxy/config.h \
 proxy/cidr.h proxy/log.h proxy/proto.h proxy/secret.h proxy/sesscache.h \
 proxy/tickets.h
proxy/tls.h:
proxy/addr.h:
proxy/config.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/sesscache.h:
proxy/tickets.h:
