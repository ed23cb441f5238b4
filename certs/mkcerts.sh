#!/bin/sh
# Makes throwaway certificates for development and tests: never use them in
# production.  Usage: certs/mkcerts.sh DIR
#
#   ca.crt                   the dev CA (trust anchor for clients and tests)
#   server-rsa.{crt,key}     RSA-2048,  SANs localhost, 127.0.0.1, ::1, mail.test
#   server-ecdsa.{crt,key}   ECDSA P-256, same names
#   upstream.{crt,key}       ECDSA, CN mail.test: the test mail servers' own
#   wrong-name.{crt,key}     signed by the CA, but for other.test only
#   expired.{crt,key}        signed by the CA, right names, expired in 2020
#   cn-only.{crt,key}        signed by the CA, CN=localhost and no SAN
#   wildcard.{crt,key}       signed by the CA, SAN *.mail.test
#   partial-wildcard.{crt,key}  signed by the CA, SAN m*.mail.test (never valid)
#   rogue-ca.crt, unknown-ca.{crt,key}  right names, signed by a CA nobody trusts
set -eu
dir=${1:?usage: mkcerts.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077
names="DNS:localhost,IP:127.0.0.1,IP:::1,DNS:mail.test"

ca() { # name subject
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$1.key" -out "$1.crt" -days 3650 -subj "$2" \
		-addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

leaf() { # name keyalg-args subject san-ext ca
	openssl req -new -newkey $2 -nodes -keyout "$1.key" -out "$1.csr" \
		-subj "$3" 2>/dev/null
	printf '%s\n' "basicConstraints=CA:FALSE" \
		"extendedKeyUsage=serverAuth" $4 > "$1.ext"
	openssl x509 -req -in "$1.csr" -CA "$5.crt" -CAkey "$5.key" \
		-CAcreateserial -days 825 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}

ca ca "/CN=mailproxy dev CA"
ca rogue-ca "/CN=rogue CA"
leaf server-rsa "rsa:2048" "/CN=localhost" "subjectAltName=$names" ca
leaf server-ecdsa "ec -pkeyopt ec_paramgen_curve:P-256" "/CN=localhost" "subjectAltName=$names" ca
# The real test mail servers (Postfix, Dovecot) present this one: CN mail.test,
# so a test can tell it from the proxy's own (CN localhost).
leaf upstream "ec -pkeyopt ec_paramgen_curve:P-256" "/CN=mail.test" "subjectAltName=DNS:mail.test,DNS:localhost,IP:127.0.0.1" ca
leaf wrong-name "ec -pkeyopt ec_paramgen_curve:P-256" "/CN=other.test" "subjectAltName=DNS:other.test" ca
leaf cn-only "ec -pkeyopt ec_paramgen_curve:P-256" "/CN=localhost" "" ca
leaf wildcard "ec -pkeyopt ec_paramgen_curve:P-256" "/CN=wildcard" "subjectAltName=DNS:*.mail.test" ca
leaf partial-wildcard "ec -pkeyopt ec_paramgen_curve:P-256" "/CN=partial" "subjectAltName=DNS:m*.mail.test" ca
leaf unknown-ca "ec -pkeyopt ec_paramgen_curve:P-256" "/CN=localhost" "subjectAltName=$names" rogue-ca

# An expired certificate needs explicit dates, which only "openssl ca" takes.
mkdir -p expired.db
: > expired.db/index.txt
cat > expired.db/ca.cnf <<CNF
[ca]
default_ca = dev
[dev]
database = expired.db/index.txt
new_certs_dir = expired.db
serial = expired.db/serial
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
[ext]
basicConstraints = CA:FALSE
subjectAltName = $names
CNF
echo 01 > expired.db/serial
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout expired.key -out expired.csr -subj "/CN=localhost" 2>/dev/null
openssl ca -batch -config expired.db/ca.cnf -cert ca.crt -keyfile ca.key \
	-startdate 20200101000000Z -enddate 20200201000000Z -extensions ext \
	-in expired.csr -out expired.crt 2>/dev/null
rm -rf expired.csr expired.db ca.srl rogue-ca.srl
chmod 644 ./*.crt
echo "certificates written to $dir"
