build-dev/reason.o: proxy/reason.c proxy/reason.h
proxy/reason.h:
