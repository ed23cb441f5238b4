/*
 * log: stderr logging in text or JSON form.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>

static enum log_level	 cur_level = LOG_LVL_INFO;
static enum log_format	 cur_format = LOG_FMT_TEXT;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
log_setup(enum log_level level, enum log_format format)
{
	cur_level = level;
	cur_format = format;
}

int
log_enabled(enum log_level level)
{
	return level <= cur_level;
}

static void
timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* Appends s to out, escaped for a JSON string or a text value. */
static size_t
escape(char *out, size_t cap, const char *s, int json)
{
	size_t n = 0;

	for (; *s != '\0' && n + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			n += (size_t)snprintf(out + n, cap - n,
			    json ? "\\u%04x" : "\\x%02x", c);
		} else
			out[n++] = (char)c;
	}
	out[n] = '\0';
	return n;
}

static void
write_line(enum log_level level, const char *body, int body_is_fields)
{
	char ts[96], esc[2200];
	int saved = errno;

	timestamp(ts, sizeof(ts));
	if (cur_format == LOG_FMT_JSON) {
		if (body_is_fields)
			fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",%s}\n",
			    ts, level_names[level], body);
		else {
			escape(esc, sizeof(esc), body, 1);
			fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\","
			    "\"msg\":\"%s\"}\n", ts, level_names[level], esc);
		}
	} else
		fprintf(stderr, "%s %s %s\n", ts, level_names[level], body);
	fflush(stderr);
	errno = saved;
}

static void
vlog(enum log_level level, const char *fmt, va_list ap, const char *suffix)
{
	char msg[2048];
	int n;

	if (!log_enabled(level))
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (suffix != NULL && n >= 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", suffix);
	write_line(level, msg, 0);
}

#define LOG_FN(name, level, with_errno)					\
void									\
name(const char *fmt, ...)						\
{									\
	va_list ap;							\
	int saved = errno;						\
	va_start(ap, fmt);						\
	vlog(level, fmt, ap, with_errno ? strerror(saved) : NULL);	\
	va_end(ap);							\
	errno = saved;							\
}

LOG_FN(log_warn, LOG_LVL_WARN, 1)
LOG_FN(log_warnx, LOG_LVL_WARN, 0)
LOG_FN(log_info, LOG_LVL_INFO, 0)
LOG_FN(log_debug, LOG_LVL_DEBUG, 0)
LOG_FN(log_errorx, LOG_LVL_ERROR, 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	vlog(LOG_LVL_ERROR, fmt, ap, strerror(saved));
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_ERROR, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}

void
log_ssl_errors(char *buf, size_t len)
{
	unsigned long e;
	size_t n = strlen(buf);

	while ((e = ERR_get_error()) != 0 && n + 2 < len) {
		if (n > 0 && buf[n - 1] != '(' && buf[n - 1] != ' ') {
			buf[n++] = ';';
			buf[n++] = ' ';
			buf[n] = '\0';
		}
		ERR_error_string_n(e, buf + n, len - n);
		n = strlen(buf);
	}
	ERR_clear_error();
}

void
logline_init(struct logline *ll)
{
	ll->len = 0;
	ll->nfields = 0;
	ll->text[0] = '\0';
}

void
logline_str(struct logline *ll, const char *key, const char *val)
{
	char esc[512];
	size_t room = sizeof(ll->text) - ll->len;
	int json = cur_format == LOG_FMT_JSON, quote, n;

	if (val == NULL)
		val = "-";
	escape(esc, sizeof(esc), val, json);
	quote = json || *val == '\0' || strpbrk(val, " \"=") != NULL;
	n = snprintf(ll->text + ll->len, room,
	    json ? "%s\"%s\":\"%s\"" : quote ? "%s%s=\"%s\"" : "%s%s=%s",
	    ll->nfields > 0 ? (json ? "," : " ") : "", key, esc);
	if (n > 0 && (size_t)n < room) {
		ll->len += (size_t)n;
		ll->nfields++;
	}
}

void
logline_num(struct logline *ll, const char *key, uint64_t val)
{
	size_t room = sizeof(ll->text) - ll->len;
	int json = cur_format == LOG_FMT_JSON;
	int n;

	n = snprintf(ll->text + ll->len, room,
	    json ? "%s\"%s\":%llu" : "%s%s=%llu",
	    ll->nfields > 0 ? (json ? "," : " ") : "", key,
	    (unsigned long long)val);
	if (n > 0 && (size_t)n < room) {
		ll->len += (size_t)n;
		ll->nfields++;
	}
}

void
logline_emit(struct logline *ll, enum log_level level)
{
	if (log_enabled(level))
		write_line(level, ll->text, 1);
}
