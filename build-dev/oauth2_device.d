build-dev/oauth2_device.o: proxy/oauth2_device.c proxy/oauth2_device.h \
 proxy/config.h proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h \
 proxy/secret.h proxy/https.h proxy/oauth2.h proxy/resolve.h \
 proxy/tokenstore.h
proxy/oauth2_device.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/https.h:
proxy/oauth2.h:
proxy/resolve.h:
proxy/tokenstore.h:
