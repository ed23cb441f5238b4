/*
 * oauth2_device: mailproxy -A SERVICE, the OAuth2 device authorization
 * grant (RFC 8628): prints the verification URL and user code, polls the
 * token endpoint, writes the service's oauth2_token_store.
 */
#ifndef MAILPROXY_OAUTH2_DEVICE_H
#define MAILPROXY_OAUTH2_DEVICE_H

struct config;

/* Returns the exit status: 0 once the store is written, 1 otherwise (the
 * reason on stderr). */
int	oauth2_authorize(const struct config *cf, const char *service);

#endif
