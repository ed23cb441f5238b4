build-dev/line.o: proxy/line.c proxy/line.h
proxy/line.h:
