build-dev/session.o: proxy/session.c proxy/sess_impl.h proxy/session.h \
 proxy/config.h proxy/addr.h proxy/cidr.h proxy/log.h proxy/proto.h \
 proxy/secret.h proxy/reason.h proxy/buffer.h proxy/endpoint.h \
 proxy/front.h proxy/negotiate.h proxy/guard.h proxy/login.h \
 proxy/metrics.h proxy/accounts.h proxy/clients.h proxy/listener.h \
 proxy/pwcheck.h proxy/tls.h
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
proxy/clients.h:
proxy/listener.h:
proxy/pwcheck.h:
proxy/tls.h:
