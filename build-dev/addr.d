build-dev/addr.o: proxy/addr.c proxy/addr.h
proxy/addr.h:
