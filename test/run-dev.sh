#!/bin/sh
# make run: a real test mail system (Postfix + Dovecot on 127.0.0.1) and
# mailproxy in front of it on config/dev.ini.  Ctrl-C stops everything.
set -u
cd "$(dirname "$0")/.."

run=$(mktemp -d /tmp/mpdev.XXXXXX)
proxy_pid=
cleanup() {
	trap - INT TERM EXIT
	[ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
	/usr/bin/python3 test/mailsys/mailsys.py stop "$run"
	rm -rf "$run"
	echo "stopped."
	exit 0
}
trap cleanup INT TERM EXIT

if ! /usr/bin/python3 test/mailsys/mailsys.py start "$run" certs/dev --dev >/dev/null; then
	echo "could not start the test mail system (see above); it needs root and make deps" >&2
	exit 1
fi

cat <<'MSG'

A test mail system is running on 127.0.0.1 (user alice, password secret,
mailbox alice@mail.test) and mailproxy is starting on config/dev.ini in front
of it.  Try these in a second terminal, from this directory:

  # SMTPS (implicit TLS) -> Postfix submission with STARTTLS
  printf 'Subject: hello\r\n\r\nvia mailproxy\r\n' > /tmp/msg.txt
  curl --ssl-reqd --cacert certs/dev/ca.crt smtps://localhost:10465 --user alice:secret \
       --mail-from bob@mail.test --mail-rcpt alice@mail.test -T /tmp/msg.txt

  # IMAPS -> Dovecot with STARTTLS: read message 1
  curl --cacert certs/dev/ca.crt 'imaps://localhost:10993/INBOX;MAILINDEX=1' --user alice:secret

  # a legacy device: plain SMTP in, STARTTLS to Postfix out
  swaks --server 127.0.0.1:10025 --auth PLAIN --auth-user alice --auth-password secret \
        --from scanner@mail.test --to alice@mail.test --header 'Subject: scan'

  # scan-to-email: no AUTH from the device; the proxy logs in to Postfix
  swaks --server 127.0.0.1:10026 --from scanner@mail.test --to alice@mail.test \
        --header 'Subject: scan-to-email'

  # STARTTLS offered in front of the plaintext-only server
  openssl s_client -starttls smtp -connect localhost:10587 -CAfile certs/dev/ca.crt \
       -verify_hostname localhost -crlf -quiet
  curl --ssl-reqd --cacert certs/dev/ca.crt 'imap://localhost:10143/INBOX;MAILINDEX=1' \
       --user alice:secret

  # POP3S -> Dovecot POP3S
  curl --cacert certs/dev/ca.crt pop3s://localhost:10995/1 --user alice:secret

Proxy log below (one line per session).  Ctrl-C stops everything.

MSG
./build/mailproxy -c config/dev.ini &
proxy_pid=$!
wait "$proxy_pid"
