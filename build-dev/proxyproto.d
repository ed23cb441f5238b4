build-dev/proxyproto.o: proxy/proxyproto.c proxy/proxyproto.h \
 proxy/addr.h
proxy/proxyproto.h:
proxy/addr.h:
