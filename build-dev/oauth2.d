build-dev/oauth2.o: proxy/oauth2.c proxy/oauth2.h proxy/proto.h \
 proxy/config.h proxy/addr.h proxy/cidr.h proxy/log.h proxy/secret.h \
 proxy/https.h proxy/resolve.h proxy/seqlock.h proxy/tokenstore.h
proxy/oauth2.h:
proxy/proto.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/secret.h:
proxy/https.h:
proxy/resolve.h:
proxy/seqlock.h:
proxy/tokenstore.h:
