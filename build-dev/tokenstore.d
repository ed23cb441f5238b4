build-dev/tokenstore.o: proxy/tokenstore.c proxy/tokenstore.h \
 proxy/secret.h
proxy/tokenstore.h:
proxy/secret.h:
