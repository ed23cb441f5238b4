build-dev/buffer.o: proxy/buffer.c proxy/buffer.h
proxy/buffer.h:
