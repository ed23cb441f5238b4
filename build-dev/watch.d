build-dev/watch.o: proxy/watch.c proxy/watch.h proxy/config.h \
 proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h proxy/secret.h \
 proxy/oauth2.h
proxy/watch.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/oauth2.h:
