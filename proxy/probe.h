/*
 * probe: mailproxy -T.  Dials one service's upstream the way a session
 * would (TCP, implicit TLS or the STARTTLS dialogue of the negotiator),
 * verifies the certificate and reads the post-TLS capabilities, with
 * blocking sockets and the service's timeouts.  For readiness checks.
 */
#ifndef MAILPROXY_PROBE_H
#define MAILPROXY_PROBE_H

#include <stddef.h>

#include "config.h"

/* Returns 0 and a summary in out, or -1 and the reason in out. */
int	probe_service(const struct service *svc, char *out, size_t len);

#endif
