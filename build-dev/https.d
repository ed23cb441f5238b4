build-dev/https.o: proxy/https.c proxy/https.h proxy/https_impl.h \
 proxy/addr.h proxy/buffer.h proxy/endpoint.h proxy/log.h proxy/resolve.h \
 proxy/tls.h
proxy/https.h:
proxy/https_impl.h:
proxy/addr.h:
proxy/buffer.h:
proxy/endpoint.h:
proxy/log.h:
proxy/resolve.h:
proxy/tls.h:
