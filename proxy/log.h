/*
 * log: one line per event on stderr, as text (key=value) or JSON.
 *
 * Free-form messages use the OpenSMTPD-style calls (log_warn adds strerror).
 * Session events are built as a list of fields with struct logline so that
 * the text and JSON forms carry exactly the same data.
 */
#ifndef MAILPROXY_LOG_H
#define MAILPROXY_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
enum log_format { LOG_FMT_TEXT, LOG_FMT_JSON };

/* Sets the threshold and output form; safe to call again on reload. */
void log_setup(enum log_level level, enum log_format format);

/* True when a message of this level would be written. */
int log_enabled(enum log_level level);

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);   /* + strerror */
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_errorx(const char *fmt, ...) LOG_PRINTF(1, 2);
void fatal(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));
void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));

/* Appends BoringSSL's error queue ("a; b") to buf and clears the queue. */
void log_ssl_errors(char *buf, size_t len);

/*
 * An event line under construction: fields are appended in order and the
 * line is written by logline_emit().  Values are escaped for the format.
 */
struct logline {
	char	 text[2048];
	size_t	 len;
	int	 nfields;
};

void logline_init(struct logline *ll);
void logline_str(struct logline *ll, const char *key, const char *val);
void logline_num(struct logline *ll, const char *key, uint64_t val);
void logline_emit(struct logline *ll, enum log_level level);

#endif
