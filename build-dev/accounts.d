build-dev/accounts.o: proxy/accounts.c proxy/accounts.h proxy/config.h \
 proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h proxy/secret.h \
 proxy/config_impl.h proxy/seqlock.h
proxy/accounts.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/config_impl.h:
proxy/seqlock.h:
