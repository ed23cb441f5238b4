build-dev/main.o: proxy/main.c proxy/accounts.h proxy/config.h \
 proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h proxy/secret.h \
 proxy/blocks.h proxy/clients.h proxy/dns.h proxy/listener.h \
 proxy/reason.h proxy/metrics.h proxy/oauth2.h proxy/oauth2_device.h \
 proxy/probe.h proxy/session.h proxy/sesscache.h proxy/tickets.h \
 proxy/tls.h proxy/tokenstore.h proxy/watch.h
proxy/accounts.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/blocks.h:
proxy/clients.h:
proxy/dns.h:
proxy/listener.h:
proxy/reason.h:
proxy/metrics.h:
proxy/oauth2.h:
proxy/oauth2_device.h:
proxy/probe.h:
proxy/session.h:
proxy/sesscache.h:
proxy/tickets.h:
proxy/tls.h:
proxy/tokenstore.h:
proxy/watch.h:
