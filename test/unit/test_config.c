/*
 * config: every error path names FILE:LINE; a good file gives the values
 * the key table promises, with inheritance and defaults.
 */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accounts.h"
#include "config.h"
#include "unit.h"

static char certdir[512];

static void
init_certdir(void)
{
	const char *d = getenv("MAILPROXY_CERTS");

	snprintf(certdir, sizeof(certdir), "%s", d ? d : "certs/dev");
}

/* Expands @ to the certificate directory in a config text. */
static char *
expand(const char *text)
{
	size_t n = 0, dl = strlen(certdir);
	char *out = malloc(strlen(text) * (dl + 1) + 1);

	for (; *text; text++) {
		if (*text == '@') {
			memcpy(out + n, certdir, dl);
			n += dl;
		} else
			out[n++] = *text;
	}
	out[n] = '\0';
	return out;
}

#define SERVICE_OK							\
	"[smtps]\n"							\
	"protocol = smtp\n"						\
	"listen = 127.0.0.1:0\n"					\
	"client_tls = implicit\n"					\
	"cert = @/server-ecdsa.crt\n"					\
	"key = @/server-ecdsa.key\n"					\
	"upstream = 127.0.0.1:25\n"					\
	"upstream_tls = none\n"

static struct config *
parse(const char *text, char **errors)
{
	char *t = expand(text);
	struct config *cf = config_parse(t, strlen(t), "test.ini", errors);

	free(t);
	return cf;
}

/* Parses text that must fail, and checks that msg appears in the errors. */
static void
expect_error(const char *text, const char *msg)
{
	char *errors = NULL;
	struct config *cf = parse(text, &errors);

	CHECK(cf == NULL);
	CHECK_STR_CONTAINS(errors, msg);
	config_unref(cf);
	free(errors);
}

/* Parses text that must load; NULL (its errors printed) if it did not. */
static struct config *
expect_ok(const char *text)
{
	char *errors = NULL;
	struct config *cf = parse(text, &errors);

	CHECK(cf != NULL);
	if (cf == NULL)
		fprintf(stderr, "%s", errors ? errors : "(no errors)\n");
	free(errors);
	return cf;
}

static void
test_good_file(void)
{
	struct config *cf = expect_ok(
	    "; global part\n"
	    "log_level = debug\n"
	    "log_format = json\n"
	    "max_connections = 500\n"
	    "max_connections_per_client = 5\n"
	    "workers = 1\n"
	    "user = nobody\n"
	    "handshake_timeout = 7\n"
	    "[global]\n"
	    "shutdown_timeout = 3\n"
	    SERVICE_OK
	    "connect_timeout = 4\n"
	    "allow = 127.0.0.0/8, ::1\n"
	    "max_connections_per_client = 3\n"
	    "\n"
	    "[imaps]\n"
	    "  protocol = imap          ; indentation and comments are fine\n"
	    "  listen = [::1]:0\n"
	    "  listen = 127.0.0.2:0\n"
	    "  client_tls = implicit\n"
	    "  cert = @/server-rsa.crt\n"
	    "  key = @/server-rsa.key\n"
	    "  tls_min_version = 1.0\n"
	    "  upstream = localhost:993\n"
	    "  upstream_tls = implicit\n"
	    "  upstream_ca = @/ca.crt\n"
	    "  upstream_tls_min_version = 1.3\n");

	if (cf == NULL)
		return;
	CHECK(cf->log_level == LOG_LVL_DEBUG);
	CHECK(cf->log_format == LOG_FMT_JSON);
	CHECK(cf->max_connections == 500);
	CHECK(cf->shutdown_timeout == 3);
	CHECK(cf->workers >= 1 && cf->workers <= 64);
	CHECK(strcmp(cf->user, "nobody") == 0 && cf->uid != 0);
	CHECK(cf->nservices == 2);
	struct service *smtps = &cf->services[0], *imaps = &cf->services[1];
	CHECK(strcmp(smtps->name, "smtps") == 0);
	CHECK(smtps->protocol == PROTO_SMTP);
	CHECK(smtps->timeouts.handshake == 7);		/* inherited */
	CHECK(smtps->timeouts.connect == 4);		/* own */
	CHECK(smtps->timeouts.negotiation == 30);	/* default */
	CHECK(smtps->timeouts.idle == 300);		/* smtp default */
	CHECK(smtps->upstream_name == NULL);		/* IP, no TLS */
	CHECK(smtps->client_ctx != NULL && smtps->upstream_ctx == NULL);
	CHECK(smtps->nallow == 2 && smtps->max_connections_per_client == 3);
	CHECK(imaps->nallow == 0 && imaps->max_connections_per_client == 5);
	CHECK(imaps->protocol == PROTO_IMAP);
	CHECK(imaps->nlisten == 2);
	CHECK(imaps->listen[0].addr.ss.ss_family == AF_INET6);
	CHECK(imaps->timeouts.idle == 1860);		/* imap default */
	CHECK(imaps->tls_min_version == TLS1_VERSION);
	CHECK(imaps->upstream_tls_min_version == TLS1_3_VERSION);
	CHECK(imaps->upstream_verify);
	CHECK(strcmp(imaps->upstream_name, "localhost") == 0);
	CHECK(imaps->upstream_ctx != NULL);
	CHECK(imaps->nupstream_addrs >= 1);
	config_unref(cf);
}

static void
test_errors_name_file_and_line(void)
{
	expect_error("log_level = loud\n" SERVICE_OK,
	    "test.ini:1: log_level: unknown value \"loud\"");
	expect_error("\n\nbogus = 1\n" SERVICE_OK,
	    "test.ini:3: unknown key \"bogus\"");
	expect_error("workers = 0\n" SERVICE_OK,
	    "test.ini:1: workers: \"0\" is not a number from 1 to 64");
	expect_error("user = no-such-user-here\n" SERVICE_OK,
	    "test.ini:1: user: no such user \"no-such-user-here\"");
	expect_error("workers = 2\n" SERVICE_OK,
	    "test.ini:4: listen 127.0.0.1:0: port 0 cannot be shared by 2 workers");
	expect_error("metrics = localhost:9100\n" SERVICE_OK,
	    "test.ini:1: metrics: \"localhost:9100\":");
	expect_error(SERVICE_OK "allow = 10.0.0.0/8 192.0.2.1/24\n",
	    "test.ini:9: allow: \"192.0.2.1/24\" is not an address or CIDR range");
	expect_error(SERVICE_OK "allow = ,\n", "test.ini:9: allow: empty list");
	expect_error(SERVICE_OK "proxy_protocol_in = yes\n",
	    "test.ini:9: [smtps]: proxy_protocol_in needs proxy_trusted");
	expect_error(SERVICE_OK "proxy_trusted = 10.0.0.0/8\n",
	    "test.ini:9: [smtps]: proxy_trusted is only used with");
	expect_error(SERVICE_OK "proxy_protocol_out = v3\n",
	    "test.ini:9: proxy_protocol_out: unknown value \"v3\"");
	expect_error("max_connections = 0\n" SERVICE_OK,
	    "test.ini:1: max_connections: \"0\" is not a number from 1");
	expect_error("idle_timeout = 5s\n" SERVICE_OK,
	    "test.ini:1: idle_timeout: \"5s\" is not a number");
	expect_error("protocol = smtp\n" SERVICE_OK,
	    "test.ini:1: protocol belongs in a service section");
	expect_error(SERVICE_OK "log_level = info\n",
	    "test.ini:9: log_level is a global key");
	expect_error(SERVICE_OK "protocol = imap\n",
	    "test.ini:9: protocol is given twice (first at line 2)");
	expect_error(SERVICE_OK SERVICE_OK,
	    "test.ini:9: service [smtps] is defined twice");
	expect_error("[x]\nprotocol = smtp\n",
	    "test.ini:1: [x]: listen is required");
	expect_error(SERVICE_OK "protocol2\n",
	    "test.ini:9: syntax error");
	expect_error(SERVICE_OK "tls_ciphers = AES128-SHA:NOPE-SUITE\n",
	    "test.ini:9: tls_ciphers: \"AES128-SHA:NOPE-SUITE\" is not modern, "
	    "legacy or a list of suites this BoringSSL has");
}

/* Issue: the 9th cert line was written past cert_lines[] (ASan saw it). */
static void
test_cert_pairs_are_capped(void)
{
	char text[4096];
	size_t n;

	for (int pairs = 9; pairs <= 12; pairs += 3) {
		n = (size_t)snprintf(text, sizeof(text), "[m]\nprotocol = imap\n"
		    "listen = 127.0.0.1:0\nclient_tls = implicit\n"
		    "upstream = 127.0.0.1:143\nupstream_tls = none\n");
		for (int i = 0; i < pairs; i++)
			n += (size_t)snprintf(text + n, sizeof(text) - n,
			    "cert = @/server-ecdsa.crt\n");
		for (int i = 0; i < pairs; i++)
			n += (size_t)snprintf(text + n, sizeof(text) - n,
			    "key = @/server-ecdsa.key\n");
		/* line 15: the 9th cert (6 lines before the first). */
		expect_error(text, "test.ini:15: cert: at most 8 per service");
		expect_error(text, "key: at most 8 per service");
	}
}

/* Ports are 1..65535 upstream (0..65535 to listen: 0 = any free port),
 * digits only; atoi() once loaded host:4294967296 as port 0. */
static void
test_ports_are_checked(void)
{
	static const struct { const char *listen, *upstream, *msg; } bad[] = {
		{ "0", "4294967296", "test.ini:7: upstream: " },
		{ "0", "65536", "test.ini:7: upstream: " },
		{ "0", "0", "test.ini:7: upstream: " },
		{ "0", "-1", "test.ini:7: upstream: " },
		{ "0", "+25", "test.ini:7: upstream: " },
		{ "0", "25x", "test.ini:7: upstream: " },
		{ "0", "", "test.ini:7: upstream: " },
		{ "0", " 25", "test.ini:7: upstream: " },
		{ "0", "000025", "test.ini:7: upstream: " },
		{ "4294967296", "25", "test.ini:3: listen: " },
		{ "65536", "25", "test.ini:3: listen: " },
		{ "99999", "25", "test.ini:3: listen: " },
		{ "1e3", "25", "test.ini:3: listen: " },
		{ "", "25", "test.ini:3: listen: " },
		{ NULL, NULL, NULL },	/* the highest ports are fine */
	};
	char text[1024];

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		snprintf(text, sizeof(text), "[a]\nprotocol = smtp\n"
		    "listen = 127.0.0.1:%s\nclient_tls = implicit\n"
		    "cert = @/server-ecdsa.crt\nkey = @/server-ecdsa.key\n"
		    "upstream = 127.0.0.1:%s\nupstream_tls = none\n",
		    bad[i].listen ? bad[i].listen : "65535",
		    bad[i].upstream ? bad[i].upstream : "65535");
		if (bad[i].msg != NULL)
			expect_error(text, bad[i].msg);
		else
			config_unref(expect_ok(text));
	}
}

/* ${NAME} in values comes from the environment; unset is a FILE:LINE error. */
static void
test_environment_expansion(void)
{
	static const char *const svc = "[e]\nprotocol = smtp\n"
	    "listen = ${MP_T_LISTEN}\nclient_tls = implicit\n"
	    "cert = @/server-ecdsa.crt\nkey = @/server-ecdsa.key\n"
	    "upstream = ${MP_T_HOST}:${MP_T_PORT}\n"
	    "upstream_tls = none ; ${MP_T_UNSET} in a comment is left alone\n"
	    "; ${MP_T_UNSET} here too\n";
	char text[1024], big[400];
	struct config *cf;

	setenv("MP_T_LISTEN", "127.0.0.1:0", 1);
	setenv("MP_T_HOST", "127.0.0.1", 1);
	setenv("MP_T_PORT", "2525", 1);
	unsetenv("MP_T_UNSET");
	if ((cf = expect_ok(svc)) != NULL)
		CHECK(strcmp(cf->services[0].upstream, "127.0.0.1:2525") == 0);
	config_unref(cf);
	unsetenv("MP_T_PORT");
	expect_error(svc, "test.ini:7: ${MP_T_PORT}: environment variable "
	    "MP_T_PORT is not set");
	setenv("MP_T_PORT", "2525", 1);
	snprintf(text, sizeof(text), "%supstream_name = ${ bad}\n", svc);
	expect_error(text, "test.ini:10: \"${\" must be followed by a variable "
	    "name");
	snprintf(text, sizeof(text), "%supstream_name = ${MP_T_HOST\n", svc);
	expect_error(text, "test.ini:10: \"${\" must be followed");
	/* A value too long for the line buffer once expanded. */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	setenv("MP_T_BIG", big, 1);
	snprintf(text, sizeof(text), "%supstream_name = ${MP_T_BIG}\n", svc);
	expect_error(text, "test.ini:10: line is too long once ${...} is "
	    "replaced");
	unsetenv("MP_T_BIG");
	/* "$" alone, and in a key's name, is just a character. */
	snprintf(text, sizeof(text), "%sehlo_name = a$b\n", svc);
	expect_error(text, "test.ini:10: ehlo_name: \"a$b\" is not a host name");
}

static void
test_values_not_yet_supported(void)
{
	expect_error("[a]\nprotocol = smtp\nlisten = 127.0.0.1:0\n"
	    "client_tls = tls\n", "test.ini:4: client_tls: unknown value "
	    "\"tls\"");
	expect_error("[a]\nprotocol = smtp\nlisten = 127.0.0.1:0\n"
	    "client_tls = starttls\nupstream = 127.0.0.1:25\n"
	    "upstream_tls = none\n", "test.ini:1: [a]: cert and key are "
	    "required when client_tls is starttls");
	expect_error("[a]\nprotocol = smtp\nlisten = 127.0.0.1:0\n"
	    "client_tls = none\nupstream = 127.0.0.1:25\nupstream_tls = none\n",
	    "test.ini:1: [a]: client_tls and upstream_tls are both none");
	expect_error("[a]\nupstream_tls = tls\n",
	    "test.ini:2: upstream_tls: unknown value \"tls\"");
	expect_error("[a]\nehlo_name = bad name!\n",
	    "test.ini:2: ehlo_name: \"bad name!\" is not a host name");
	expect_error(SERVICE_OK "ehlo_name = proxy.test\n",
	    "test.ini:9: ehlo_name is only used with upstream_tls = starttls "
	    "or upstream_auth (smtp), or client_tls = starttls");
	expect_error("[a]\nprotocol = lmtp\n",
	    "test.ini:2: protocol: unknown value \"lmtp\"");
	expect_error("[a]\ntls_min_version = 1.4\n",
	    "test.ini:2: tls_min_version: unknown TLS version \"1.4\"");
	expect_error("[a]\nupstream_tls_min_version = 1.1\n",
	    "test.ini:2: upstream_tls_min_version: unknown TLS version");
	expect_error("[a]\nupstream_verify = maybe\n",
	    "test.ini:2: upstream_verify: unknown value");
}

static void
test_starttls_upstream(void)
{
	struct config *cf = expect_ok(
	    "[legacy]\n"
	    "protocol = smtp\n"
	    "listen = 127.0.0.1:0\n"
	    "client_tls = none\n"
	    "upstream = localhost:587\n"
	    "upstream_tls = starttls\n"
	    "ehlo_name = scanner-gw.example.org\n"
	    "[imap]\n"
	    "protocol = imap\n"
	    "listen = 127.0.0.1:0\n"
	    "client_tls = implicit\n"
	    "cert = @/server-ecdsa.crt\n"
	    "key = @/server-ecdsa.key\n"
	    "upstream = localhost:143\n"
	    "upstream_tls = starttls\n");

	if (cf == NULL)
		return;
	CHECK(cf->services[0].client_tls == TLS_MODE_NONE);
	CHECK(cf->services[0].client_ctx == NULL);
	CHECK(cf->services[0].upstream_tls == TLS_MODE_STARTTLS);
	CHECK(cf->services[0].upstream_ctx != NULL);
	CHECK(strcmp(cf->services[0].ehlo_name, "scanner-gw.example.org") == 0);
	CHECK(cf->services[1].ehlo_name != NULL);	/* host name default */
	config_unref(cf);
	/* Plaintext clients need no certificate, and may not name one. */
	expect_error("[a]\nprotocol = smtp\nlisten = 127.0.0.1:0\n"
	    "client_tls = none\ncert = @/server-ecdsa.crt\n"
	    "key = @/server-ecdsa.key\nupstream = localhost:587\n"
	    "upstream_tls = starttls\n",
	    "test.ini:5: cert/key are only used when client_tls is not none");
}

static void
test_long_line_is_refused_not_truncated(void)
{
	char text[1024];
	char name[260];

	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(text, sizeof(text), SERVICE_OK "upstream_name = %s\n", name);
	expect_error(text, "test.ini:9: line is too long");
	/* 198 bytes of content still fit. */
	snprintf(text, sizeof(text), SERVICE_OK "upstream_name = %.*s\n",
	    198 - 16, name);
	struct config *cf = expect_ok(text);
	CHECK(cf != NULL && strlen(cf->services[0].upstream_name) == 182);
	config_unref(cf);
}

static void
test_cross_key_rules(void)
{
	expect_error("[a]\nprotocol = smtp\nlisten = 127.0.0.1:0\n"
	    "client_tls = implicit\nupstream = 127.0.0.1:25\n"
	    "upstream_tls = none\n",
	    "test.ini:1: [a]: cert and key are required");
	expect_error(SERVICE_OK "upstream_tls = implicit\n",
	    "test.ini:9: upstream_tls is given twice");
	expect_error("[a]\nprotocol = smtp\nlisten = 127.0.0.1:0\n"
	    "client_tls = implicit\ncert = @/server-ecdsa.crt\n"
	    "key = @/server-ecdsa.key\nupstream = 127.0.0.1:465\n"
	    "upstream_tls = implicit\n",
	    "test.ini:7: [a]: upstream 127.0.0.1:465 is an IP address: set "
	    "upstream_name");
	expect_error("[a]\nprotocol = smtp\nlisten = 127.0.0.1:0\n"
	    "client_tls = implicit\ncert = @/server-ecdsa.crt\n"
	    "key = @/server-rsa.key\nupstream = 127.0.0.1:25\n"
	    "upstream_tls = none\n",
	    "test.ini:5: cert ");
	expect_error("[a]\nprotocol = smtp\nlisten = 127.0.0.1:0\n"
	    "client_tls = implicit\ncert = @/server-ecdsa.crt\n"
	    "key = @/server-rsa.key\nupstream = 127.0.0.1:25\n"
	    "upstream_tls = none\n",
	    "key does not match certificate");
	expect_error("[a]\ncert = /nonexistent/x.crt\n",
	    "test.ini:2: cert: cannot read /nonexistent/x.crt");
	expect_error("[a]\nprotocol = smtp\nlisten = 127.0.0.1:2525\n"
	    "client_tls = implicit\ncert = @/server-ecdsa.crt\n"
	    "key = @/server-ecdsa.key\nupstream = 127.0.0.1:25\n"
	    "upstream_tls = none\n"
	    "[b]\nprotocol = smtp\nlisten = 127.0.0.1:2525\n"
	    "client_tls = implicit\ncert = @/server-ecdsa.crt\n"
	    "key = @/server-ecdsa.key\nupstream = 127.0.0.1:25\n"
	    "upstream_tls = none\n",
	    "test.ini:11: listen 127.0.0.1:2525 is already used by [a] at "
	    "line 3");
	expect_error("[a]\nlisten = 127.0.0.1\n",
	    "test.ini:2: listen: \"127.0.0.1\" is not host:port");
	expect_error("[a]\nlisten = ::1:25\n", "test.ini:2: listen:");
	expect_error("[a]\nupstream = host:99999\n",
	    "test.ini:2: upstream: \"host:99999\" is not host:port");
	expect_error("[a]\nupstream = :25\n", "test.ini:2: upstream:");
	expect_error("[a]\nupstream_ca = /nonexistent.pem\n",
	    "test.ini:2: upstream_ca: cannot read");
}

static void
test_bad_ca_file_is_reported(void)
{
	/* A readable file that holds no certificate. */
	expect_error("[a]\nprotocol = smtp\nlisten = 127.0.0.1:0\n"
	    "client_tls = implicit\ncert = @/server-ecdsa.crt\n"
	    "key = @/server-ecdsa.key\nupstream = localhost:465\n"
	    "upstream_tls = implicit\nupstream_ca = @/server-ecdsa.key\n",
	    "test.ini:9: [a]: upstream TLS: cannot load CA file");
}

/* A secret file with the given contents and mode; the path goes in path. */
static void
secret_file(char *path, size_t len, const char *contents, mode_t mode)
{
	int fd;

	snprintf(path, len, "/tmp/mp-unit-secret-XXXXXX");
	if ((fd = mkstemp(path)) < 0)
		return;
	CHECK(write(fd, contents, strlen(contents)) == (ssize_t)strlen(contents));
	CHECK(fchmod(fd, mode) == 0);
	close(fd);
}

#define AUTH_SVC							\
	"[scan]\n"							\
	"protocol = smtp\n"						\
	"listen = 127.0.0.1:0\n"					\
	"client_tls = none\n"						\
	"upstream = 127.0.0.1:587\n"					\
	"upstream_name = mail.test\n"					\
	"upstream_tls = starttls\n"					\
	"upstream_auth = %s\n"		/* line 8 */			\
	"upstream_user = alice\n"					\
	"%s = %s\n"			/* line 10 */			\
	"%s\n"				/* line 11 */

/* Formats AUTH_SVC and expects msg (or success with msg NULL). */
static void
auth_case(const char *mech, const char *file_key, const char *file,
    const char *extra, const char *msg)
{
	char text[2048];

	snprintf(text, sizeof(text), AUTH_SVC, mech, file_key, file, extra);
	if (msg != NULL)
		expect_error(text, msg);
	else
		config_unref(expect_ok(text));
}

static void
test_upstream_auth_rules(void)
{
	char pw[64], open_pw[64], empty[64], twolines[64], crlf[64], text[2048];
	char secret[SECRET_MAX + 1], err[300];
	struct config *cf;

	secret_file(pw, sizeof(pw), "s3cr3t\n", 0600);
	secret_file(open_pw, sizeof(open_pw), "s3cr3t\n", 0644);
	secret_file(empty, sizeof(empty), "\n", 0600);
	secret_file(twolines, sizeof(twolines), "a\nb\n", 0640);
	secret_file(crlf, sizeof(crlf), "tok3n\r\n", 0400);

	/* The good case: the password is read at load. */
	snprintf(text, sizeof(text), AUTH_SVC, "plain",
	    "upstream_password_file", pw, "allow = 192.0.2.0/24 2001:db8::/32");
	if ((cf = expect_ok(text)) != NULL) {
		const struct service *svc = &cf->services[0];
		CHECK(svc->upstream_auth == AUTH_PLAIN);
		CHECK(strcmp(svc->upstream_user, "alice") == 0);
		CHECK(svc->upstream_password_len == 6 &&
		    strcmp(svc->upstream_password, "s3cr3t") == 0);
		CHECK(config_auth_secret(svc, secret, sizeof(secret), err,
		    sizeof(err)) == 6 && strcmp(secret, "s3cr3t") == 0);
	}
	config_unref(cf);
	auth_case("xoauth2", "upstream_token_file", crlf, "allow = 10.1.2.3", NULL);
	{
		/* The workers read the token as user: a file only root can
		 * read would pass a load done as root, then fail every
		 * session.  (line 11 once "user = nobody" is line 1) */
		char t[2048], *u = t;
		u += snprintf(t, sizeof(t), "user = nobody\n");
		snprintf(u, sizeof(t) - (size_t)(u - t), AUTH_SVC, "xoauth2",
		    "upstream_token_file", crlf, "allow = 10.1.2.3");
		if (geteuid() == 0) {
			expect_error(t, "test.ini:11: upstream_token_file ");
			expect_error(t, "user nobody cannot read it");
			CHECK(chown(crlf, 65534, 0) == 0);	/* nobody's */
			config_unref(expect_ok(t));
			CHECK(chown(crlf, 0, 0) == 0);
		}
	}

	{
		/* mechanism, secret key, its file, line 11, expected error */
		const struct { const char *mech, *key, *file, *extra, *msg; } bad[] = {
			/* An authenticated relay needs the devices, not the world. */
			{ "plain", "upstream_password_file", pw, "",
			    "test.ini:8: [scan]: upstream_auth makes this listener a "
			    "relay logged in as alice for anyone who reaches it" },
			{ "login", "upstream_password_file", pw,
			    "allow = 10.0.0.0/8 0.0.0.0/0",
			    "test.ini:11: [scan]: allow covers the whole internet" },
			{ "login", "upstream_password_file", pw, "allow = ::/0",
			    "test.ini:11: [scan]: allow covers the whole internet" },
			/* Secrets: private, one line, not empty. */
			{ "plain", "upstream_password_file", open_pw, "allow = 10.0.0.0/8",
			    "is readable by everyone (mode 0644): chmod o-rwx it" },
			{ "plain", "upstream_password_file", empty, "allow = 10.0.0.0/8",
			    ": empty" },
			{ "plain", "upstream_password_file", twolines,
			    "allow = 10.0.0.0/8", "test.ini:10: upstream_password_file: " },
			{ "plain", "upstream_password_file", "/nonexistent/pw",
			    "allow = 10.0.0.0/8", "test.ini:10: upstream_password_file: "
			    "cannot open /nonexistent/pw" },
			{ "xoauth2", "upstream_token_file", open_pw, "allow = 10.0.0.0/8",
			    "test.ini:10: upstream_token_file: " },
			/* The right secret for the mechanism. */
			{ "xoauth2", "upstream_password_file", pw, "allow = 10.0.0.0/8",
			    "[scan]: upstream_auth = xoauth2 needs exactly one of oauth2_token_store" },
			{ "plain", "upstream_token_file", crlf, "allow = 10.0.0.0/8",
			    "[scan]: upstream_auth = plain needs upstream_password_file" },
			{ "sha1", "upstream_password_file", pw, "allow = 10.0.0.0/8",
			    "test.ini:8: upstream_auth: unknown value \"sha1\"" },
			/* Credentials only to a verified or pinned server. */
			{ "plain", "upstream_password_file", pw,
			    "allow = 10.0.0.0/8\nupstream_verify = no\n"
			    "upstream_pin = sha256/AAAA",
			    "test.ini:13: upstream_pin: \"sha256/AAAA\" is not "
			    "sha256/ and the base64 of a SHA-256" },
			{ "plain", "upstream_password_file", pw,
			    "allow = 10.0.0.0/8\nupstream_verify = no",
			    "test.ini:12: [scan]: upstream_verify = no with "
			    "upstream_auth = plain would send the credentials" },
			{ "xoauth2", "upstream_token_file", crlf,
			    "allow = 10.0.0.0/8\nupstream_verify = no",
			    "test.ini:12: [scan]: upstream_verify = no with "
			    "upstream_auth = xoauth2" },
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
			auth_case(bad[i].mech, bad[i].key, bad[i].file, bad[i].extra,
			    bad[i].msg);
	}
	/* A pin makes upstream_verify = no acceptable with credentials;
	 * it needs TLS toward the upstream. */
	snprintf(text, sizeof(text), AUTH_SVC, "plain", "upstream_password_file",
	    pw, "allow = 10.0.0.0/8\nupstream_verify = no\nupstream_pin = "
	    "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= "
	    "sha256/IhDpbn6QKgE6vsUgv3WNtiyVCuI6/8n4dKcEqRsaa0Y=");
	if ((cf = expect_ok(text)) != NULL)
		CHECK(cf->services[0].nupstream_pins == 2 &&
		    cf->services[0].upstream_pins[0][0] == 0xe3);
	config_unref(cf);
	expect_error(SERVICE_OK "upstream_pin = "
	    "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
	    "test.ini:9: [smtps]: upstream_pin needs upstream_tls = starttls "
	    "or implicit");
	/* Devices' certificates: a CA to check them against, TLS to ask in,
	 * and the CA and allow_cert keys only when asking. */
	expect_error(SERVICE_OK "client_verify = require\n",
	    "test.ini:9: [smtps]: client_verify needs client_ca");
	expect_error(SERVICE_OK "client_ca = /etc/hostname\n",
	    "test.ini:9: client_ca is only used with client_verify");
	expect_error(SERVICE_OK "allow_cert = sha256:00\n",
	    "test.ini:9: allow_cert: \"sha256:00\" is not sha256: and the 64 hex");
	{
		uint8_t fp[32];
		CHECK(config_fingerprint_parse("SHA256:" "AB:CD:00:11:22:33:44:55:"
		    "66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:"
		    "aa:bb:cc:dd", fp) == 0 && fp[0] == 0xab && fp[31] == 0xdd);
		CHECK(config_fingerprint_parse("sha256:abcd", fp) < 0);
		CHECK(config_fingerprint_parse("sha1:" "abcdabcdabcdabcdabcd"
		    "abcdabcdabcdabcdabcd", fp) < 0);
	}
	/* Never in clear, SMTP only, keys only with upstream_auth. */
	snprintf(text, sizeof(text), SERVICE_OK "upstream_auth = plain\n"
	    "upstream_user = alice\nupstream_password_file = %s\n"
	    "allow = 10.0.0.0/8\n", pw);
	expect_error(text, "test.ini:9: [smtps]: upstream_auth needs "
	    "upstream_tls = starttls or implicit");
	snprintf(text, sizeof(text), SERVICE_OK "upstream_user = alice\n");
	expect_error(text, "test.ini:9: upstream_user is only used with "
	    "upstream_auth");
	expect_error(SERVICE_OK "upstream_user = al ice\n",
	    "test.ini:9: upstream_user: blanks and control characters");
	snprintf(text, sizeof(text), "[i]\nprotocol = imap\nlisten = "
	    "127.0.0.1:0\nclient_tls = none\nupstream = 127.0.0.1:993\n"
	    "upstream_name = mail.test\nupstream_tls = implicit\n"
	    "upstream_auth = plain\nupstream_user = a\n"
	    "upstream_password_file = %s\nallow = 10.0.0.0/8\n", pw);
	expect_error(text, "test.ini:8: [i]: upstream_auth is for smtp services");

	/* The reader itself: CRLF stripped. */
	CHECK(secret_read(crlf, secret, sizeof(secret), err,
	    sizeof(err)) == 5 && strcmp(secret, "tok3n") == 0);
	unlink(pw);
	unlink(open_pw);
	unlink(empty);
	unlink(twolines);
	unlink(crlf);
}


#define ACCT_SVC							\
	"[imaps]\n"							\
	"protocol = imap\n"						\
	"listen = 127.0.0.1:0\n"					\
	"client_tls = implicit\n"					\
	"cert = @/server-ecdsa.crt\n"					\
	"key = @/server-ecdsa.key\n"					\
	"upstream = 127.0.0.1:993\n"					\
	"upstream_name = mail.test\n"					\
	"upstream_tls = implicit\n"					\
	"upstream_auth = accounts\n"	/* line 10 */

/* upstream_auth = accounts and [account:NAME]: hashes checked with
 * libcrypt at load, exactly one credential, errors at FILE:LINE. */
static void
test_accounts(void)
{
	char pw[64], tok[64], hash[256], text[4096];
	const struct account *a;
	struct config *cf;

	secret_file(pw, sizeof(pw), "upstream-secret\n", 0600);
	secret_file(tok, sizeof(tok), "ya29.token\n", 0600);
	CHECK(account_make_hash("local-pw", hash, sizeof(hash)) == 0);
	CHECK(strncmp(hash, "$y$", 3) == 0);
	CHECK(account_password_ok(hash, "local-pw", 8));
	CHECK(!account_password_ok(hash, "local-pX", 8));
	CHECK(!account_password_ok(hash, "local-pw\0", 9));

	snprintf(text, sizeof(text), ACCT_SVC "auth_failures_max = 3\n"
	    "[account:scanner.example.com]\npassword_hash = %s\n"
	    "upstream_password_file = %s\n"
	    "[account:crm]\npassword_hash = %s\nupstream_user = crm.example.com\n"
	    "upstream_token_file = %s\n", hash, pw,
	    "$6$saltsalt$pn.eNCAqRIao3pxsOGdjVa9wVR7Rb/3WnbxOluoQKVZPzLuyetx3yF6VIZDfQnn/arrFVfrq3BqRb9gLqhI5z0", tok);
	/* One method and cost for all, or timing tells names apart. */
	expect_error(text, "all accounts need one method and cost");
	snprintf(text, sizeof(text), ACCT_SVC "auth_failures_max = 3\n"
	    "[account:scanner.example.com]\npassword_hash = %s\n"
	    "upstream_password_file = %s\n"
	    "[account:crm]\npassword_hash = %s\nupstream_user = crm.example.com\n"
	    "upstream_token_file = %s\n", "$6$saltsalt$pn.eNCAqRIao3pxsOGdjVa9wVR7Rb/3WnbxOluoQKVZPzLuyetx3yF6VIZDfQnn/arrFVfrq3BqRb9gLqhI5z0", pw, "$6$saltsalt$pn.eNCAqRIao3pxsOGdjVa9wVR7Rb/3WnbxOluoQKVZPzLuyetx3yF6VIZDfQnn/arrFVfrq3BqRb9gLqhI5z0", tok);
	if ((cf = expect_ok(text)) != NULL) {
		CHECK(cf->naccounts == 2);
		CHECK(cf->services[0].auth_failures_max == 3);
		CHECK(cf->services[0].auth_block_time == 900);
		a = accounts_find(cf, "scanner.example.com");
		CHECK(a != NULL && a->cred == ACCT_PASSWORD &&
		    strcmp(a->upstream_user, "scanner.example.com") == 0 &&
		    a->upstream_password_len == 15);
		a = accounts_find(cf, "crm");
		CHECK(a != NULL && a->cred == ACCT_TOKEN_FILE &&
		    strcmp(a->upstream_user, "crm.example.com") == 0);
		CHECK(a != NULL && account_password_ok(a->password_hash, "Hello world!", 12));
		CHECK(accounts_find(cf, "CRM") == NULL);
		CHECK(cf->accounts[0].fingerprint != cf->accounts[1].fingerprint);
	}
	/* What old workers learn after a reload: which accounts still are. */
	if (cf != NULL) {
		struct config *next;
		uint64_t fp0 = cf->accounts[0].fingerprint;
		uint64_t fp1 = cf->accounts[1].fingerprint;
		snprintf(text, sizeof(text), ACCT_SVC "[account:crm]\npassword_hash = "
		    "%s\nupstream_user = crm.example.com\nupstream_token_file = %s\n",
		    "$6$saltsalt$pn.eNCAqRIao3pxsOGdjVa9wVR7Rb/3WnbxOluoQKVZPzLuyetx3yF6VIZDfQnn/arrFVfrq3BqRb9gLqhI5z0",
		    tok);
		CHECK(accounts_current(fp0));		/* no table: all are */
		CHECK(accounts_shared_init() == 0);
		accounts_publish(cf);
		CHECK(accounts_current(fp0) && accounts_current(fp1));
		if ((next = expect_ok(text)) != NULL) {
			accounts_publish(next);
			CHECK(!accounts_current(fp0));	/* removed */
			CHECK(accounts_current(fp1));	/* the same account */
		}
		config_unref(next);
	}
	config_unref(cf);

	struct { const char *tail; const char *msg; } bad[] = {
		{ "[account:a]\nupstream_password_file = %2$s\n",
		    "test.ini:11: [account:a]: password_hash is required" },
		{ "[account:a]\npassword_hash = $1$abc$def\nupstream_password_file = %2$s\n",
		    "test.ini:12: password_hash: not a yescrypt" },
		{ "[account:a]\npassword_hash = $y$j9T$abc\nupstream_password_file = %2$s\n",
		    "test.ini:12: password_hash: not a complete hash" },
		{ "[account:a]\npassword_hash = %1$s\n",
		    "test.ini:11: [account:a]: needs an upstream credential" },
		{ "[account:a]\npassword_hash = %1$s\nupstream_password_file = %2$s\n"
		    "upstream_token_file = %2$s\n",
		    "test.ini:14: [account:a]: one upstream credential only" },
		{ "[account:a]\npassword_hash = %1$s\nprotocol = imap\n",
		    "test.ini:13: protocol cannot be set in an [account:NAME] section" },
		{ "password_hash = %1$s\n",
		    "test.ini:11: password_hash belongs in an [account:NAME] section" },
		{ "upstream_user = bob\n[account:a]\npassword_hash = %1$s\n"
		    "upstream_password_file = %2$s\n",
		    "test.ini:11: upstream_user is only used with upstream_auth = plain" },
		{ "[account:a]\nclient_cert = sha256:" "0000000000000000000000"
		    "000000000000000000000000000000000000000000\n"
		    "upstream_password_file = %2$s\n",
		    "test.ini:12: [account:a]: client_cert needs client_verify" },
		{ "[account:a]\nclient_cert = sha256:12\n"
		    "upstream_password_file = %2$s\n",
		    "test.ini:12: client_cert: \"sha256:12\" is not sha256:" },
		{ "upstream_verify = no\n[account:a]\npassword_hash = %1$s\n"
		    "upstream_password_file = %2$s\n",
		    "test.ini:11: [imaps]: upstream_verify = no with upstream_auth = "
		    "accounts would send the credentials" },
		{ "auth_failures_max = 0\n",
		    "test.ini:11: auth_failures_max: \"0\" is not a number from 1 to 1000" },
		{ "", "[imaps]: upstream_auth = accounts needs at least one [account:NAME]" },
		{ "[account:a b]\npassword_hash = %1$s\n", "test.ini:11: [account:a b]: the name" },
		{ "[account:a]\npassword_hash = %1$s\nupstream_password_file = %2$s\n"
		    "[account:a]\nupstream_user = b\n",
		    "test.ini:14: [account:a] is defined twice (first at line 11)" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char tail[1024];
		snprintf(tail, sizeof(tail), bad[i].tail, hash, pw);
		snprintf(text, sizeof(text), ACCT_SVC "%s", tail);
		expect_error(text, bad[i].msg);
	}
	/* Logins only inside TLS, credentials only over TLS. */
	snprintf(text, sizeof(text), ACCT_SVC "[account:a]\npassword_hash = %s\n"
	    "upstream_password_file = %s\n", hash, pw);
	{
		char t2[4096];
		snprintf(t2, sizeof(t2), "%s", text);
		memcpy(strstr(t2, "upstream_tls = implicit"), "upstream_tls = none    ", 23);
		strstr(t2, "upstream_name")[0] = '#';
		expect_error(t2, "test.ini:10: [imaps]: upstream_auth = accounts needs upstream_tls");
	}
	/* Accounts nobody uses are a mistake. */
	snprintf(text, sizeof(text), SERVICE_OK "[account:a]\npassword_hash = %s\n"
	    "upstream_password_file = %s\n", hash, pw);
	expect_error(text, "test.ini:9: [account:a]: no service has upstream_auth = accounts");
	unlink(pw);
	unlink(tok);
}

/* The packaged starting point: every service commented out.  It loads
 * (-t passes); main refuses to run it. */
static void
test_no_service_loads(void)
{
	struct config *cf = expect_ok("log_level = info\n[global]\n"
	    "workers = 1\n");

	CHECK(cf != NULL && cf->nservices == 0);
	config_unref(cf);
}

void
test_config(void)
{
	init_certdir();
	test_cert_pairs_are_capped();
	test_ports_are_checked();
	test_environment_expansion();
	test_good_file();
	test_no_service_loads();
	test_errors_name_file_and_line();
	test_values_not_yet_supported();
	test_starttls_upstream();
	test_long_line_is_refused_not_truncated();
	test_cross_key_rules();
	test_bad_ca_file_is_reported();
	test_upstream_auth_rules();
	test_accounts();
}
