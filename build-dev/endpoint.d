build-dev/endpoint.o: proxy/endpoint.c proxy/endpoint.h proxy/buffer.h \
 proxy/log.h
proxy/endpoint.h:
proxy/buffer.h:
proxy/log.h:
