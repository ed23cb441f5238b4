/*
 * libFuzzer harness for the failed-login table (blocks.c) and the decision
 * after a password check (accounts_gate()), against a reference model.
 *
 * The input drives sessions of a few clients through the calls the
 * session makes: blocks_begin() when a login's check starts,
 * accounts_gate() when it ends (password right or wrong, for one of four
 * accounts or an unknown name), a reload publishing another set of
 * accounts, the clock moving, blocks_blocked() at connect.  Clients: IPv4
 * addresses, one of them also written v4-mapped, and two addresses of one
 * IPv6 /64 (the same client).  The properties:
 *  - no login is accepted for a blocked client, nor for an account the
 *    running configuration no longer has;
 *  - no check starts for a blocked client, and blocks_blocked() says so;
 *  - a client never has more than max checks under way and failed within
 *    its block's reach (its chain of failures, each within the window of
 *    the one before).
 * The model's block is the least the rule demands (max failures, each
 * within window of the previous, the last within window of now): the
 * table may block longer (a check under way keeps its entry), never less.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "accounts.h"
#include "blocks.h"
#include "config_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NADDR		6	/* addresses; clients: see client_of */
#define NCLIENT		4
#define NSESS		12
#define NACCT		4
#define MAXFAIL		64

static int64_t	now;

static int64_t
fake_clock(void)
{
	return now;
}

/* Which client each address is: 0 and 1 are one (v4 and v4-mapped), 4
 * and 5 one (two addresses of one /64). */
static const int client_of[NADDR] = { 0, 0, 1, 2, 3, 3 };

static struct sockaddr_any
address(int i)
{
	struct sockaddr_any a;

	memset(&a, 0, sizeof(a));
	if (i == 0 || i == 2 || i == 3) {
		struct sockaddr_in *s = (struct sockaddr_in *)&a.ss;
		a.len = sizeof(*s);
		s->sin_family = AF_INET;
		s->sin_addr.s_addr = htonl(i == 2 ? 0xc0000202 : i == 3 ?
		    0xc6336401 : 0xc0000201);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a.ss;
		uint8_t *x = s->sin6_addr.s6_addr;
		a.len = sizeof(*s);
		s->sin6_family = AF_INET6;
		if (i == 1) {		/* ::ffff:192.0.2.1 */
			x[10] = x[11] = 0xff;
			x[12] = 192, x[13] = 0, x[14] = 2, x[15] = 1;
		} else {		/* 2001:db8:0:1::5 and ::6 */
			x[0] = 0x20, x[1] = 0x01, x[2] = 0x0d, x[3] = 0xb8;
			x[7] = 1, x[15] = (uint8_t)i;
		}
	}
	return a;
}

struct model_client {
	int64_t		 fails[MAXFAIL];	/* times of its failures */
	int		 nfails;
	int		 pending;	/* checks under way, of this gen */
	int64_t		 touched;	/* last begin or failure (0: none) */
	int		 gen;		/* lives of its entry */
};

struct sess {
	bool			 open;
	int			 addr;
	int			 account;	/* -1: an unknown name */
	int			 gen;		/* its client's, at begin */
	struct blocks_attempt	 at;
};

/* The table forgets a client window after its last begin or failure
 * (checks under way included): the model too. */
static void
expire(struct model_client *clients, int64_t window)
{
	for (int i = 0; i < NCLIENT; i++)
		if (clients[i].touched != 0 &&
		    clients[i].touched + window <= now) {
			clients[i].touched = 0;
			clients[i].pending = 0;
			clients[i].gen++;
		}
}

/* The failures of c's chain that reach now: the last one within window of
 * now, each before within window of the next. */
static int
chain(const struct model_client *c, int64_t window)
{
	int n = 0;

	if (c->nfails == 0 || c->fails[c->nfails - 1] + window <= now)
		return 0;
	for (int i = c->nfails - 1; i >= 0; i--) {
		n++;
		if (i > 0 && c->fails[i - 1] + window <= c->fails[i])
			break;
	}
	return n;
}

static void
publish(struct config *cf, struct account *accts, unsigned mask)
{
	cf->naccounts = 0;
	for (int i = 0; i < NACCT; i++)
		if (mask & (1u << i))
			cf->accounts[cf->naccounts++] = accts[i];
	accounts_publish(cf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	static struct account accts[NACCT], live[NACCT];
	struct config cf;
	struct model_client clients[NCLIENT];
	struct sess sess[NSESS];
	unsigned mask = 0xf;
	int max, windows;
	int64_t window;

	if (!ready) {
		if (blocks_init() < 0 || accounts_shared_init() < 0)
			abort();
		blocks_set_clock(fake_clock);
		for (int i = 0; i < NACCT; i++)
			accts[i].fingerprint = 0x1000 + (uint64_t)i;
		ready = true;
	}
	if (size < 2)
		return 0;
	blocks_reset();
	now = 1000000;
	memset(&cf, 0, sizeof(cf));
	cf.accounts = live;
	publish(&cf, accts, mask);
	memset(clients, 0, sizeof(clients));
	memset(sess, 0, sizeof(sess));
	max = 1 + data[0] % 5;
	windows = 1 + data[1] % 3;
	window = (int64_t)windows * 1000;
	for (size_t i = 2; i + 1 < size; i += 2) {
		uint8_t op = data[i], arg = data[i + 1];
		struct sess *s = &sess[arg % NSESS];
		expire(clients, window);
		switch (op % 6) {
		case 0: {	/* a login's check starts */
			struct model_client *c;
			bool widened;
			enum blocks_verdict v;
			if (s->open)
				break;
			s->addr = (op >> 3) % NADDR;
			s->account = (int)((arg >> 4) % (NACCT + 1)) - 1;
			c = &clients[client_of[s->addr]];
			struct sockaddr_any a = address(s->addr);
			v = blocks_begin(&a, max, windows, &s->at, &widened);
			if (chain(c, window) >= max && v == BLOCKS_GO)
				abort();	/* a check for a blocked client */
			if (v == BLOCKS_GO) {
				c->pending++;
				if (c->pending + chain(c, window) > max)
					abort();	/* past the limit */
				s->open = true;
				s->gen = c->gen;
				c->touched = now;
			}
			break;
		}
		case 1:		/* its check ends: right or wrong password */
		case 2: {
			bool right = op % 6 == 1;
			struct model_client *c;
			struct sockaddr_any a;
			const struct account *acct;
			enum login_gate g;
			bool blocked_before;
			if (!s->open)
				break;
			c = &clients[client_of[s->addr]];
			a = address(s->addr);
			acct = s->account < 0 ? NULL : &accts[s->account];
			blocked_before = chain(c, window) >= max;
			g = accounts_gate(right, acct, &s->at, &a, max, windows);
			if (s->gen == c->gen)
				c->pending--;
			if (g == GATE_ACCEPT && (blocked_before || acct == NULL ||
			    !right || !(mask & (1u << s->account))))
				abort();	/* blocked, unknown or removed */
			/* The table counts what was not a right password of a
			 * current account (a right one refused because the
			 * client is blocked is no guess). */
			if (!(right && acct != NULL && (mask & (1u << s->account))) &&
			    c->nfails < MAXFAIL) {
				c->fails[c->nfails++] = now;
				c->touched = now;
			}
			if (g != GATE_ACCEPT && chain(c, window) >= max &&
			    g != GATE_BLOCKED)
				abort();	/* the block not said */
			if (g == GATE_ACCEPT &&
			    (blocks_blocked(&a, max, windows) ||
			    chain(c, window) >= max))
				abort();
			if (c->nfails == MAXFAIL)	/* keep the model exact */
				return 0;
			s->open = false;
			break;
		}
		case 3:		/* a reload: another set of accounts */
			mask = arg & 0xf;
			publish(&cf, accts, mask);
			break;
		case 4:		/* time passes */
			now += (int64_t)(arg % 40) * 100;
			break;
		case 5: {	/* a connection: blocked at accept? */
			struct sockaddr_any a = address(arg % NADDR);
			if (chain(&clients[client_of[arg % NADDR]], window) >= max &&
			    !blocks_blocked(&a, max, windows))
				abort();
			break;
		}
		}
	}
	for (int i = 0; i < NSESS; i++)
		if (sess[i].open) {
			struct sockaddr_any a = address(sess[i].addr);
			(void)blocks_end(&sess[i].at, &a, true, max, windows);
		}
	return 0;
}
