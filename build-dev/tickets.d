build-dev/tickets.o: proxy/tickets.c proxy/tickets.h proxy/secret.h \
 proxy/seqlock.h
proxy/tickets.h:
proxy/secret.h:
proxy/seqlock.h:
