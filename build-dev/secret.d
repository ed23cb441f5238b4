build-dev/secret.o: proxy/secret.c proxy/secret.h
proxy/secret.h:
