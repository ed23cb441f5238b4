build-dev/config_keys.o: proxy/config_keys.c proxy/config_impl.h \
 proxy/config.h proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h \
 proxy/secret.h proxy/accounts.h proxy/tickets.h
proxy/config_impl.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/accounts.h:
proxy/tickets.h:
