build-dev/config.o: proxy/config.c proxy/config_impl.h proxy/config.h \
 proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h proxy/secret.h \
 proxy/dns.h proxy/oauth2.h proxy/tls.h
proxy/config_impl.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/dns.h:
proxy/oauth2.h:
proxy/tls.h:
