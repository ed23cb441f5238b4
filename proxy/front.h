/*
 * front: the device's side of an upstream_auth service (SMTP).
 *
 * The proxy has logged in to the upstream itself.  Until the device sends
 * MAIL FROM, the proxy answers it locally:
 *
 *   EHLO            the upstream's post-TLS keywords, without AUTH and
 *                   STARTTLS (the device has nothing to authenticate)
 *   HELO NOOP RSET  250;  QUIT: 221 and close
 *   AUTH            success whatever the mechanism and credentials, so a
 *                   device configured with dummy ones keeps working; its
 *                   continuation lines are consumed and never kept
 *   STARTTLS        refused: TLS is already up, or not offered here
 *   RCPT DATA BDAT  503 (MAIL first);  anything else 502
 *
 * With upstream_auth = accounts (front_new_accounts()) the device logs in
 * first, before the upstream is dialled:
 *
 *   EHLO            the proxy's own keywords, AUTH PLAIN LOGIN among them
 *   AUTH PLAIN      [ir] / AUTH LOGIN [ir]: the credentials, then
 *                   FRONT_CHECK; the session checks them and answers
 *                   through the dialogue of login.h (front_login())
 *   MAIL RCPT DATA  530 until logged in
 *
 * and once the upstream took the account's credential (login_accepted()),
 * it goes on as above, with the upstream's keywords (front_set_caps()).
 *
 * MAIL ends the front: that line and every byte after it go to the
 * upstream untouched.  Pure: only complete lines are consumed, so what
 * follows MAIL stays with the caller for the relay.
 */
#ifndef MAILPROXY_FRONT_H
#define MAILPROXY_FRONT_H

#include <stdbool.h>
#include <stddef.h>

#include "buffer.h"
#include "negotiate.h"

/* RFC 4954 4: an AUTH line with its initial response may be this long. */
#define FRONT_MAX_LINE	12288

struct front;

/* The device dialogue's verdicts. */
enum front_verdict {
	FRONT_CONTINUE,		/* send the replies, feed more input */
	FRONT_CHECK,		/* accounts: check the login (front_login()) */
	FRONT_RELAY,		/* MAIL seen: relay from *consumed on */
	FRONT_CLOSE,		/* QUIT answered: send, then close */
	FRONT_FAIL		/* send the replies, if any, then close */
};

/*
 * name: the proxy's EHLO name; caps: keywords, each followed by CRLF (see
 * neg_caps()); tls: the device's side is in TLS.  NULL when out of memory.
 */
struct front *front_new(const char *name, const char *caps, bool tls);
void	front_free(struct front *f);

/* upstream_auth = accounts: the device logs in to the proxy first.  tls:
 * the device's side is in TLS (always, with accounts). */
struct front *front_new_accounts(const char *name, bool tls);

/* Its login dialogue: the credentials of FRONT_CHECK and the replies to
 * it (login_refused(), login_accepted(), ...). */
struct login *front_login(struct front *f);

/* The upstream's keywords for EHLO once logged in (see front_new()). */
int	front_set_caps(struct front *f, const char *caps);

/*
 * Feeds what the device sent; *consumed is how many bytes were complete
 * lines it answered (never the MAIL line).  Replies go to to_client.
 * On FRONT_FAIL, front_reason() says why.
 */
enum front_verdict front_feed(struct front *f, const char *data, size_t len,
	    size_t *consumed, struct buf *to_client);

/* The device was too slow: queues the timeout reply. */
void	front_timeout(struct buf *to_client);

enum close_reason front_reason(const struct front *f);

#endif
