#!/bin/sh
# oauth2_alert_command for mailproxy: mails the alert through one of the
# proxy's own SMTP listeners, with curl.
#
#   oauth2_alert_command = /usr/local/libexec/mailproxy-alert.sh
#
# Pick a listener that does not depend on the grant that failed: another
# service, an app-only one (oauth2_grant = client_credentials), or one that
# relays to a local MTA.  Set in mailproxy's environment (systemd:
# Environment=), all optional:
#   ALERT_SMTP  the listener, default smtp://127.0.0.1:25
#   ALERT_FROM  default mailproxy@$(hostname)
#   ALERT_TO    default postmaster@$(hostname)
# mailproxy gives MAILPROXY_SERVICE, MAILPROXY_ACCOUNT (empty for a
# service), MAILPROXY_STATE (failing or recovered), MAILPROXY_REASON and
# MAILPROXY_ACTION; it kills this script if it runs longer than 30 s.
set -eu

host=$(hostname)
smtp=${ALERT_SMTP:-smtp://127.0.0.1:25}
from=${ALERT_FROM:-mailproxy@$host}
to=${ALERT_TO:-postmaster@$host}
who=$MAILPROXY_SERVICE${MAILPROXY_ACCOUNT:+:$MAILPROXY_ACCOUNT}

printf 'From: mailproxy <%s>\r\nTo: <%s>\r\nSubject: mailproxy on %s: OAuth2 %s %s\r\nDate: %s\r\n\r\nService:   %s\r\nState:     %s\r\nWhat:      %s\r\nTo do:     %s\r\n' \
    "$from" "$to" "$host" "$who" "$MAILPROXY_STATE" "$(date -R)" \
    "$who" "$MAILPROXY_STATE" "$MAILPROXY_REASON" "$MAILPROXY_ACTION" |
    curl --silent --show-error --max-time 20 --url "$smtp" \
        --mail-from "$from" --mail-rcpt "$to" --upload-file -
