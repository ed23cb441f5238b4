build-dev/cidr.o: proxy/cidr.c proxy/cidr.h
proxy/cidr.h:
