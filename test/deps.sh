#!/bin/sh
# make deps: installs the Debian packages that are missing, and nothing else.
# Usage: test/deps.sh PACKAGE...
#
# Postfix and Dovecot are test servers here, started by the tests in a temp
# directory: their packages must not configure or start system daemons.  So
# Postfix is preseeded as "No configuration", and a policy-rc.d that denies
# service starts is in place during the install (removed again if we made it).
# Of the prometheus package only promtool is used: its server is also kept
# from starting at boot.
set -eu

missing=
for p in "$@"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "installing:$missing"
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo 'postfix postfix/main_mailer_type select No configuration' | $SUDO debconf-set-selections
made_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod 755 /usr/sbin/policy-rc.d
	made_policy=1
fi
status=0
$SUDO apt-get update -qq || status=$?
if [ $status = 0 ]; then
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
		--no-install-recommends $missing || status=$?
fi
case " $missing " in
*" nginx "*)
	# make bench starts its own nginx with its own file, never the service.
	$SUDO update-rc.d nginx disable >/dev/null 2>&1 || :
	;;
esac
case " $missing " in
*" prometheus "*)
	# (update-rc.d removes the systemd link too)
	$SUDO update-rc.d prometheus disable >/dev/null 2>&1 || :
	;;
esac
[ -n "$made_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
exit $status
