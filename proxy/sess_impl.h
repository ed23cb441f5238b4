/*
 * sess_impl: what the session's four files share (private to session.c,
 * upstream.c, client.c and relay.c):
 *
 *   session.c   lifecycle, the state machine, timers, closing
 *   client.c    the client's side before the relay: PROXY header, the
 *               client STARTTLS dialogue, upstream_auth's device front
 *   upstream.c  dial, PROXY out, TLS and STARTTLS toward the server
 *   relay.c     the hot path, with the STARTTLS-in-TLS guard
 */
#ifndef MAILPROXY_SESS_IMPL_H
#define MAILPROXY_SESS_IMPL_H

#include "session.h"
#include "tls.h"

#include "blocks.h"
#include "buffer.h"
#include "endpoint.h"
#include "front.h"
#include "guard.h"
#include "log.h"
#include "login.h"
#include "metrics.h"
#include "negotiate.h"
#include "reason.h"

enum sess_state {
	SESS_PROXY_HEADER,	/* proxy_protocol_in: reading the header */
	SESS_CLIENT_PRETLS,	/* client_tls = starttls: before STARTTLS */
	SESS_CLIENT_HANDSHAKE,
	SESS_TOKEN_WAIT,	/* oauth2_token_store: a refresh in flight */
	SESS_CONNECT,
	SESS_NEGOTIATE,		/* upstream greeting/STARTTLS dialogue */
	SESS_UPSTREAM_HANDSHAKE,
	SESS_LOGIN,		/* accounts: the client logs in to the proxy */
	SESS_LOGIN_CHECK,	/* accounts: its password is being checked */
	SESS_FRONT,		/* upstream_auth: answering the device */
	SESS_RELAY,
	SESS_FAREWELL,		/* sending the client an error, then closing */
};

/* Upper bound of read/write rounds per callback, for fairness. */
#define PUMP_ROUNDS	16

/*
 * Invariants.  Before RELAY, client bytes are read only by the TLS
 * handshake, the PROXY header reader and the client-side STARTTLS dialogue
 * (CLIENT_PRETLS: these consume exactly what they parse; other early bytes
 * wait in the socket), and in FRONT (upstream_auth: the device's commands
 * up to MAIL, which the proxy answers itself; MAIL and what follows stay in
 * c2u for the relay).  Otherwise c2u holds only commands the negotiator
 * wrote for the upstream, u2c only what the proxy itself says to the client
 * (its greeting or an error), and what the upstream says goes to neg_in,
 * never to the client.  With accounts the client logs in first (LOGIN,
 * or FRONT for SMTP; the bytes after its login command wait in held while
 * the upstream is dialled and logged in to, and go back to c2u for the
 * relay).  From RELAY on, c2u holds client bytes and u2c
 * upstream bytes.  closing is set once, by close_now(), and the session is
 * freed by the callback wrapper that saw it.
 */
struct session {
	uint64_t		 id;
	struct config		*cf;		/* our reference */
	const struct service	*svc;
	enum sess_state		 state;
	struct endpoint		 client;
	struct endpoint		 upstream;
	struct buf		 c2u;
	struct buf		 u2c;
	struct svc_metrics	*metrics;	/* this worker's counters */
	struct cneg		*cneg;		/* client_tls = starttls */
	bool			 client_starttls; /* STARTTLS accepted */
	struct negotiator	*neg;		/* see needs_negotiator() */
	struct front		*front;		/* upstream_auth, until MAIL */
	struct login		*login;		/* accounts: IMAP, POP3 */
	struct pwcheck		*check;		/* LOGIN_CHECK: the job */
	const struct account	*checking;	/* its account (NULL: unknown) */
	struct blocks_attempt	 attempt;	/* the check, as blocks counts it */
	const struct account	*account;	/* logged in as (in cf) */
	bool			 accepted;	/* the upstream took it too */
	struct buf		 held;		/* client bytes after the login
						   command, until the relay */
	struct guard		*guard;		/* client in TLS: mid-command */
	bool			 starttls_in_tls; /* the guard saw one */
	struct buf		 neg_in;	/* upstream bytes for neg */
	ev_tstamp		 neg_deadline;	/* absolute */
	ev_timer		 timer;
	ev_tstamp		 started;
	ev_tstamp		 last_activity;
	size_t			 next_addr;	/* upstream address to try */
	struct sockaddr_any	 peer_addr;	/* the client (PROXY: carried) */
	struct sockaddr_any	 local_addr;	/* where it connected to (lazy) */
	struct sockaddr_any	 count_addr;	/* counted under it (len 0: not
						   yet, a PROXY header to come) */
	uint8_t			*pp_buf;	/* partial PROXY header, rare */
	size_t			 pp_len;
	char			 peer[64];
	char			 upstream_addr[64];
	struct tls_route	 route;		/* sni: its address, the pick */
	bool			 counted;	/* metrics_session_open() done */
	uint8_t			 client_cert[32];	/* client_verify: the
						 * device's certificate, SHA-256 */
	bool			 has_client_cert;
	bool			 cert_login;	/* logged in by that certificate */
	bool			 cert_preauth;	/* SMTP: before any AUTH */
	char			 upstream_tls[64];	/* its TLS, kept when the upstream
						 * leg closes before the session */
	const char		*first_eof;	/* "client" or "upstream" */
	bool			 closing;
	bool			 abort;		/* close with RST */
	enum close_reason	 reason;
	char			 detail[256];
	enum log_level		 severity;
	enum log_level		 farewell_severity;
	struct session		*prev, *next;
};

/* ---- session.c ---- */

/* The current phase's deadline: seconds from now, or an absolute time. */
void	set_deadline(EV_P_ struct session *s, int seconds);
void	set_deadline_at(EV_P_ struct session *s, ev_tstamp when);

/* Ends the session now (logged with reason); its callback frees it. */
void	close_now(struct session *s, enum log_level severity,
	    enum close_reason reason, const char *detail);

/* Sends the client what u2c holds, then closes (state FAREWELL). */
void	close_after_reply(EV_P_ struct session *s, enum log_level severity,
	    enum close_reason reason, const char *detail);

void	set_nodelay(int fd);

/* Both endpoints' watchers: run the machine, free the session if closed. */
void	sess_io_cb(EV_P_ ev_io *w, int revents);

/* Runs the machine from outside a watcher (a finished password check). */
void	sess_run(EV_P_ struct session *s);

/* ---- client.c ---- */

/* The client is known (socket or PROXY header): its first phase. */
void	sess_begin(EV_P_ struct session *s);
void	read_proxy_header(EV_P_ struct session *s);
void	client_pretls(EV_P_ struct session *s);
void	note_legacy_tls(const struct session *s);
void	start_front(EV_P_ struct session *s);

/* The proxy's own dialogue with the client: FRONT (SMTP) and LOGIN. */
void	client_dialogue(EV_P_ struct session *s);

/* sni: the service the client's server name picked becomes the
 * session's; its allow and per-client cap apply.  false: closed. */
bool	take_route(struct session *s);

/* client_verify: the device's certificate after its handshake: logged,
 * kept, and checked against allow_cert.  false: the session was closed. */
bool	device_certificate(struct session *s);

/* The device's certificate as logs and metrics write it, "sha256:HEX"
 * (72 bytes suffice). */
void	client_cert_text(const struct session *s, char *out, size_t cap);

/* A failed client handshake: its reason (a certificate named). */
void	client_handshake_failed(struct session *s);

/* The client's TLS is up: its login (accounts) or the upstream next. */
void	client_ready(EV_P_ struct session *s);

/* The login dialogue of the session (LOGIN's, or FRONT's with accounts). */
struct login *sess_login(const struct session *s);

/* The session ends while its password is being checked: a failed login
 * (logged, counted, toward the block). */
void	login_abandoned(struct session *s);

/* accounts: the upstream took the account's credential. */
void	account_logged_in(EV_P_ struct session *s);

/* ---- upstream.c ---- */

void	start_connect(EV_P_ struct session *s);
void	connect_done(EV_P_ struct session *s);
void	negotiate(EV_P_ struct session *s);
void	upstream_tls_up(EV_P_ struct session *s);
void	upstream_handshake_failed(EV_P_ struct session *s);

/*
 * The upstream failed before the relay: the client is told in its
 * protocol what the reason's table entry says (a temporary error, so a
 * mail client retries later), then the session closes.
 */
void	fail_upstream(EV_P_ struct session *s, enum close_reason reason,
	    const char *detail);

/* ---- relay.c ---- */

void	start_relay(EV_P_ struct session *s);
void	relay(EV_P_ struct session *s);
void	arm_relay(EV_P_ struct session *s);

#endif
