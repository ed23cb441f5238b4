build-dev/pwcheck.o: proxy/pwcheck.c proxy/pwcheck.h proxy/accounts.h \
 proxy/config.h proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h \
 proxy/secret.h
proxy/pwcheck.h:
proxy/accounts.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
