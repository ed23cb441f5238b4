build-dev/clients.o: proxy/clients.c proxy/clients.h proxy/config.h \
 proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h proxy/secret.h
proxy/clients.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
