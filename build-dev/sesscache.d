build-dev/sesscache.o: proxy/sesscache.c proxy/sesscache.h \
 proxy/seqlock.h
proxy/sesscache.h:
proxy/seqlock.h:
