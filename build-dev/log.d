build-dev/log.o: proxy/log.c proxy/log.h
proxy/log.h:
