build-dev/resolve.o: proxy/resolve.c proxy/resolve.h proxy/addr.h
proxy/resolve.h:
proxy/addr.h:
