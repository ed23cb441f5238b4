/*
 * config_share: services that listen on one address, told apart by the
 * TLS server name (sni): who may share, and which of them binds it.
 */
#include "config_impl.h"

#include <stdlib.h>
#include <string.h>

/* Does a name of x's sni list also stand in y's?  The first one, or NULL. */
static const char *
sni_overlap(const struct service *x, const struct service *y)
{
	for (size_t i = 0; i < x->nsni; i++)
		for (size_t j = 0; j < y->nsni; j++)
			if (strcmp(x->sni[i], y->sni[j]) == 0)
				return x->sni[i];
	return NULL;
}

/* Can y share x's address (sni)?  Errors at y's listen line. */
static bool
can_share(struct parser *p, const struct service *x,
    const struct listen_addr *xl, const struct service *y,
    const struct listen_addr *yl)
{
	const char *name;

	if (x == y) {
		cfg_error(p, yl->line, "listen %s is given twice in [%s] (first "
		    "at line %d)", yl->text, y->name, xl->line);
		return false;
	}
	if (x->nsni == 0 && y->nsni == 0) {
		cfg_error(p, yl->line, "listen %s is already used by [%s] at line "
		    "%d (services sharing an address are told apart by sni: "
		    "all but one need it)", yl->text, x->name, xl->line);
		return false;
	}
	if (x->protocol != y->protocol || x->client_tls != y->client_tls ||
	    y->client_tls == TLS_MODE_NONE ||
	    x->proxy_protocol_in != y->proxy_protocol_in) {
		cfg_error(p, yl->line, "listen %s is shared with [%s] at line %d: "
		    "services sharing an address must agree on protocol, "
		    "client_tls (implicit or starttls) and proxy_protocol_in",
		    yl->text, x->name, xl->line);
		return false;
	}
	if (x->client_verify != y->client_verify || (x->client_ca == NULL) !=
	    (y->client_ca == NULL) || (x->client_ca != NULL &&
	    strcmp(x->client_ca, y->client_ca) != 0)) {
		cfg_error(p, yl->line, "listen %s is shared with [%s] at line %d: "
		    "services sharing an address must agree on client_verify and "
		    "client_ca (the certificate is asked for before the name "
		    "picks the service)", yl->text, x->name, xl->line);
		return false;
	}
	if ((name = sni_overlap(x, y)) != NULL) {
		cfg_error(p, y->seen[K_SNI], "sni %s is claimed by [%s] (line %d) "
		    "and [%s] (line %d), which share listen %s", name, x->name,
		    x->seen[K_SNI], y->name, y->seen[K_SNI], yl->text);
		return false;
	}
	return true;
}

/*
 * The services listening on service i's address a (from it on): alone,
 * nothing to do; several, they must be told apart by sni, and the address
 * is bound by one of them (the one without sni, else the first), whose
 * entry lists them all.
 */
void
config_group_address(struct parser *p, size_t i, size_t a)
{
	struct config *cf = p->cf;
	struct listen_addr *xl = &cf->services[i].listen[a], *bind = xl;
	const struct listen_addr **at;
	const struct service **routes;
	size_t n = 1;

	/* Grouped already (as a later member, or the one that binds). */
	if (xl->shared || xl->routes != NULL || addr_port_is_zero(&xl->addr))
		return;
	routes = calloc(cf->nservices + 1, sizeof(*routes));
	at = calloc(cf->nservices + 1, sizeof(*at));
	if (routes == NULL || at == NULL) {
		cfg_error(p, xl->line, "out of memory");
		free(routes);
		free(at);
		return;
	}
	routes[0] = &cf->services[i];
	at[0] = xl;
	for (size_t j = i; j < cf->nservices; j++)
		for (size_t b = (j == i ? a + 1 : 0); b < cf->services[j].nlisten;
		    b++) {
			struct listen_addr *yl = &cf->services[j].listen[b];
			bool ok = true;
			if (!addr_equal(&xl->addr, &yl->addr))
				continue;
			for (size_t k = 0; k < n && ok; k++)
				ok = can_share(p, routes[k], at[k],
				    &cf->services[j], yl);
			if (!ok || n > cf->nservices)
				continue;
			yl->shared = true;
			if (cf->services[j].nsni == 0)
				bind = yl;
			at[n] = yl;
			routes[n++] = &cf->services[j];
		}
	free(at);
	/* Alone without sni: an address as any.  Alone with sni: names it
	 * does not list are refused (unrecognized_name). */
	if (n == 1 && cf->services[i].nsni == 0) {
		free(routes);
		return;
	}
	if (bind != xl) {
		xl->shared = true;
		bind->shared = false;
	}
	bind->routes = routes;
	bind->nroutes = n;
}

