build-dev/dns.o: proxy/dns.c proxy/dns.h proxy/config.h proxy/addr.h \
 proxy/cidr.h proxy/log.h proxy/proto.h proxy/secret.h proxy/resolve.h \
 proxy/seqlock.h
proxy/dns.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/resolve.h:
proxy/seqlock.h:
