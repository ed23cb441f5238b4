build-dev/upstream.o: proxy/upstream.c proxy/sess_impl.h proxy/session.h \
 proxy/config.h proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h \
 proxy/secret.h proxy/reason.h proxy/buffer.h proxy/endpoint.h \
 proxy/front.h proxy/negotiate.h proxy/guard.h proxy/login.h \
 proxy/metrics.h proxy/accounts.h proxy/dns.h proxy/oauth2.h \
 proxy/proxyproto.h proxy/tls.h proxy/tokenstore.h
proxy/sess_impl.h:
proxy/session.h:
proxy/config.h:
proxy/addr.h:
proxy/cidr.h:
proxy/log.h:
proxy/proto.h:
proxy/secret.h:
proxy/reason.h:
proxy/buffer.h:
proxy/endpoint.h:
proxy/front.h:
proxy/negotiate.h:
proxy/guard.h:
proxy/login.h:
proxy/metrics.h:
proxy/accounts.h:
proxy/dns.h:
proxy/oauth2.h:
proxy/proxyproto.h:
proxy/tls.h:
proxy/tokenstore.h:
