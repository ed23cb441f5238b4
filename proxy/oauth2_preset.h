/*
 * oauth2_preset: the providers' endpoints and scopes, as data.  Applied
 * once, when the configuration is built; what runs later reads the
 * resulting oauth2_conf only.
 */
#ifndef MAILPROXY_OAUTH2_PRESET_H
#define MAILPROXY_OAUTH2_PRESET_H

struct oauth2_conf;

/*
 * Fills what c leaves unset from its provider (microsoft: of its
 * oauth2_cloud and oauth2_tenant): the grant, the token, device and
 * authorize endpoints and, by protocol (enum proto, or -1 for an account,
 * which may serve every protocol), the scope.  A grant that needs no person
 * gets the application scope of the resource (Microsoft's .default).
 */
void	oauth2_apply_preset(struct oauth2_conf *c, int proto);

#endif
