# mailproxy — GNU Makefile.  Knobs first.
SHELL     := /bin/bash
CC        ?= cc
BUILD     ?= build
SANITIZE  ?=
MULTIARCH := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
BSSL_INC  := /usr/include/android
BSSL_LIB  := /usr/lib/$(MULTIARCH)/android
PYTHON    := /usr/bin/python3

WARN   := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes \
          -Wstrict-prototypes -Wpointer-arith -Wcast-qual
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -fno-strict-aliasing -MMD -MP \
          -isystem $(BSSL_INC) $(SANITIZE) $(CFLAGS)
LDLIBS := -L$(BSSL_LIB) -Wl,-rpath,$(BSSL_LIB) -lssl -lcrypto -lev -linih -lcares -ljansson -lcrypt -lsystemd -pthread
LDFLAGS += $(SANITIZE)

# Debian packages the build and the tests need (make deps installs them).
# DEPS_BUILD is also exactly the container image's build stage: libc6-dev is
# named because gcc only recommends it (the image installs without them).
DEPS_BUILD := android-libboringssl-dev libev-dev libinih-dev libc-ares-dev libjansson-dev libsystemd-dev libc6-dev gcc make
DEPS_TEST  := python3 python3-pytest openssl curl swaks libnet-ssleay-perl haproxy \
              libio-socket-ssl-perl procps iproute2 bsdutils man-db prometheus python3-yaml \
              python3-cryptography
# make deb and its tests: debhelper, lintian, systemd-analyze (systemd).
DEPS_DEB   := debhelper dpkg-dev fakeroot lintian systemd
# Real mail servers for the interop tests and make run (never started as
# system services: see test/deps.sh).
DEPS_MAIL  := postfix dovecot-imapd dovecot-pop3d dovecot-lmtpd

SRCS := log notify buffer cidr addr secret reason clients blocks accounts pwcheck config config_keys config_oauth2 config_share watch resolve http https tokenstore jwt oauth2 oauth2_form oauth2_preset oauth2_grant oauth2_client oauth2_sa oauth2_code oauth2_alert oauth2_device dns tickets sesscache tls sockbio endpoint listener session client upstream relay line negotiate redact login smtp pop3 imap front guard probe proxyproto metrics worker
OBJS := $(SRCS:%=$(BUILD)/%.o)
UNIT := $(wildcard test/unit/test_*.c)
# The runner and the peers the suites share.
UNIT_LIB := test/unit/main.c test/unit/dnsstub.c

FUZZ_NEG     := smtp pop3 imap
FUZZ_OWN     := config proxyproto guard https login blocks
FUZZ_SECONDS ?= 60
PROTO_smtp := PROTO_SMTP
PROTO_pop3 := PROTO_POP3
PROTO_imap := PROTO_IMAP
LIB_SRCS := $(SRCS:%=proxy/%.c)

PREFIX  ?= /usr/local
DESTDIR ?=

# The version has one home, the -V string in proxy/main.c.
VERSION  := $(shell sed -n 's/^\#define MAILPROXY_VERSION[[:space:]]*"\([^"]*\)".*/\1/p' proxy/main.c)
DEB_ARCH := $(shell dpkg-architecture -qDEB_HOST_ARCH 2>/dev/null)
DEB_DIR  ?= build-deb
DEB_OUT  ?= .
DEB_TREE := $(DEB_DIR)/mailproxy-$(VERSION)
DEB      := mailproxy_$(VERSION)_$(DEB_ARCH).deb

.PHONY: all deps run test check memcheck unit integration fuzz-replay fuzz bench clean certs install deb
all: $(BUILD)/mailproxy

$(BUILD)/%.o: proxy/%.c | $(BUILD)
	$(CC) $(ALL_CFLAGS) -Iproxy -c -o $@ $<

$(BUILD)/mailproxy: $(OBJS) $(BUILD)/main.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/unit_tests: $(OBJS) $(UNIT) $(UNIT_LIB) test/unit/unit.h test/unit/dnsstub.h | $(BUILD)
	$(CC) $(ALL_CFLAGS) -Iproxy -Itest/unit -o $@ $(UNIT_LIB) $(UNIT) $(OBJS) $(LDFLAGS) $(LDLIBS)

# Fuzz harnesses replayed over their seed corpus with the normal compiler.
$(FUZZ_NEG:%=$(BUILD)/replay_%): $(BUILD)/replay_%: test/fuzz/fuzz_negotiate.c test/fuzz/standalone.c $(OBJS) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -Iproxy -DFUZZ_PROTO=$(PROTO_$*) -o $@ $< test/fuzz/standalone.c $(OBJS) $(LDFLAGS) $(LDLIBS)

$(FUZZ_OWN:%=$(BUILD)/replay_%): $(BUILD)/replay_%: test/fuzz/fuzz_%.c test/fuzz/standalone.c $(OBJS) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -Iproxy -o $@ $< test/fuzz/standalone.c $(OBJS) $(LDFLAGS) $(LDLIBS)

$(BUILD):
	mkdir -p $@

# Installs whatever is missing; a no-op when everything is there.
deps:
	@sh test/deps.sh $(DEPS_BUILD) $(DEPS_TEST) $(DEPS_DEB) $(DEPS_MAIL)

certs/dev/ca.crt:
	sh certs/mkcerts.sh certs/dev

# The test mail system's password, for make run's upstream_auth listener.
certs/dev/alice.password: | certs/dev/ca.crt
	umask 077 && printf 'secret\n' > $@

certs: certs/dev/ca.crt certs/dev/alice.password

run: deps all certs
	sh test/run-dev.sh

unit: $(BUILD)/unit_tests certs
	$(BUILD)/unit_tests

fuzz-replay: $(FUZZ_NEG:%=$(BUILD)/replay_%) $(FUZZ_OWN:%=$(BUILD)/replay_%)
	@for p in $(FUZZ_NEG) $(FUZZ_OWN); do $(BUILD)/replay_$$p test/fuzz/corpus/$$p || exit 1; done

# libFuzzer with clang (Debian clang + libclang-rt-14-dev), bounded in time.
fuzz:
	@sh test/deps.sh clang libclang-rt-14-dev
	mkdir -p build-fuzz
	for p in $(FUZZ_NEG); do \
		clang -g -O1 -std=c11 -D_GNU_SOURCE -isystem $(BSSL_INC) -Iproxy -DFUZZ_PROTO=PROTO_$${p^^} \
		  -fsanitize=fuzzer,address,undefined -o build-fuzz/fuzz_$$p \
		  test/fuzz/fuzz_negotiate.c $(LIB_SRCS) $(LDLIBS) || exit 1; \
	done
	for h in $(FUZZ_OWN); do \
		clang -g -O1 -std=c11 -D_GNU_SOURCE -isystem $(BSSL_INC) -Iproxy \
		  -fsanitize=fuzzer,address,undefined -o build-fuzz/fuzz_$$h \
		  test/fuzz/fuzz_$$h.c $(LIB_SRCS) $(LDLIBS) || exit 1; \
	done
	for p in $(FUZZ_NEG) $(FUZZ_OWN); do \
		mkdir -p build-fuzz/corpus-$$p && cp -n test/fuzz/corpus/$$p/* build-fuzz/corpus-$$p/; \
		build-fuzz/fuzz_$$p -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
		  build-fuzz/corpus-$$p test/fuzz/corpus/$$p || exit 1; \
	done

# Benchmark tools: built with the same flags, not part of the daemon.
$(BUILD)/loadgen $(BUILD)/backend: $(BUILD)/%: test/bench/%.c | $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

# Side by side with stunnel4 and HAProxy; never part of make test.
bench: deps all certs $(BUILD)/loadgen $(BUILD)/backend
	@sh test/deps.sh stunnel4 haproxy nginx libnginx-mod-stream libnginx-mod-mail
	$(PYTHON) test/bench/bench.py

integration: $(BUILD)/mailproxy
	MAILPROXY_BIN=$(abspath $(BUILD)/mailproxy) $(PYTHON) -m pytest -q -p no:cacheprovider test/integration

test: deps
	$(MAKE) all $(BUILD)/unit_tests
	$(MAKE) unit fuzz-replay integration

# Sanitizer build in its own directory: same tests, ASan + UBSan.  Then
# memcheck on the normal build (ASan brings its own malloc).
check: deps
	$(MAKE) BUILD=build-asan SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" CFLAGS="-O1 -g" unit fuzz-replay integration
	$(MAKE) memcheck

# A test library preloaded into the proxy: no heap chunk the proxy frees
# may still hold a secret (test/integration/test_memcheck.py).  Never built
# with the sanitizers, whatever SANITIZE says.
$(BUILD)/memcheck.so: test/memcheck/memcheck.c | $(BUILD)
	$(CC) -std=c11 $(WARN) -O1 -g -fPIC -shared -o $@ $< -ldl

memcheck: $(BUILD)/mailproxy $(BUILD)/memcheck.so certs
	MAILPROXY_BIN=$(abspath $(BUILD)/mailproxy) MEMCHECK_SO=$(abspath $(BUILD)/memcheck.so) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider test/integration/test_memcheck.py

# The binary, the man page and the systemd unit (not enabled).
install: all
	install -D -m 755 $(BUILD)/mailproxy $(DESTDIR)$(PREFIX)/sbin/mailproxy
	install -D -m 644 config/deploy/mailproxy.8 $(DESTDIR)$(PREFIX)/share/man/man8/mailproxy.8
	install -D -m 644 config/deploy/mailproxy.ini.5 $(DESTDIR)$(PREFIX)/share/man/man5/mailproxy.ini.5
	install -D -m 644 config/deploy/mailproxy.service $(DESTDIR)/etc/systemd/system/mailproxy.service
	install -d -m 755 $(DESTDIR)/etc/mailproxy

# The Debian package, from the checkout as it is: a copy of the sources
# with config/deploy/debian as debian/, the changelog made here (the
# version from main.c), the unit with the package's path; then
# dpkg-buildpackage -b.  The .deb lands in DEB_OUT, DEB_DIR keeps the
# tree (the tests use their own).
deb:
	rm -rf $(DEB_TREE) && mkdir -p $(DEB_TREE) $(DEB_OUT)
	cp -r Makefile LICENSE README.md proxy config $(DEB_TREE)/
	cp -r config/deploy/debian $(DEB_TREE)/debian
	sed 's|/usr/local/sbin/|/usr/sbin/|g' config/deploy/mailproxy.service \
	  > $(DEB_TREE)/debian/mailproxy.service
	{ printf 'mailproxy (%s) unstable; urgency=medium\n\n' '$(VERSION)'; \
	  printf '  * Built from the checkout at %s.\n\n' \
	    "$$(git describe --always --dirty 2>/dev/null || echo unknown)"; \
	  printf ' -- %s  %s\n' "$$(sed -n 's/^Maintainer: //p' config/deploy/debian/control)" \
	    "$$(git log -1 --format=%aD 2>/dev/null || date -R)"; \
	} > $(DEB_TREE)/debian/changelog
	@# Debian's own flags only: not a sanitizer build's (make check exports
	@# BUILD, SANITIZE and CFLAGS to everything it runs).
	cd $(DEB_TREE) && env -u BUILD -u SANITIZE -u CFLAGS -u LDFLAGS -u MAKEFLAGS \
	  -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES dpkg-buildpackage -b -us -uc
	cp $(DEB_DIR)/$(DEB) $(DEB_OUT)/

clean:
	rm -rf build build-asan build-fuzz build-deb

-include $(wildcard $(BUILD)/*.d)
