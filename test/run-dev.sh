#!/bin/sh
# make run: a throwaway SMTP sink on 127.0.0.1:2525 and mailproxy in front of
# it on config/dev.ini.  Ctrl-C stops both.
set -u
cd "$(dirname "$0")/.."

sink_pid=
cleanup() {
	[ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null
	exit 0
}
trap cleanup INT TERM EXIT

if /usr/bin/python3 -c 'import smtpd' 2>/dev/null; then
	/usr/bin/python3 -W ignore -m smtpd -n -c DebuggingServer 127.0.0.1:2525 &
	sink_pid=$!
else
	echo "note: Python's smtpd module is missing; start any SMTP server on 127.0.0.1:2525" >&2
fi

cat <<MSG

mailproxy is starting on config/dev.ini (SMTPS on 127.0.0.1:10465).
In a second terminal, send a message through it:

  printf 'Subject: hello\r\n\r\nvia mailproxy\r\n' > /tmp/msg.txt
  curl --ssl-reqd --cacert certs/dev/ca.crt smtps://localhost:10465 \\
       --mail-from alice@example.org --mail-rcpt bob@example.org -T /tmp/msg.txt

or look at the TLS session and talk SMTP by hand:

  openssl s_client -connect localhost:10465 -CAfile certs/dev/ca.crt \\
       -verify_hostname localhost -crlf -quiet

The sink prints each message it receives below.  Ctrl-C stops everything.

MSG
./build/mailproxy -c config/dev.ini
