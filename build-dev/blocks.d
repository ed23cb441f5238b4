build-dev/blocks.o: proxy/blocks.c proxy/blocks.h proxy/addr.h
proxy/blocks.h:
proxy/addr.h:
