build-dev/unit_tests: test/unit/test_resolve.c test/unit/dnsstub.h \
 proxy/resolve.h proxy/addr.h test/unit/unit.h
test/unit/dnsstub.h:
proxy/resolve.h:
proxy/addr.h:
test/unit/unit.h:
