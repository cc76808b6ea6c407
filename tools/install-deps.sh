#!/bin/sh
# Installs the Debian packages the build, the tests and the benchmarks need.
# systemd: systemd-analyze for the unit test; prometheus: promtool for the /metrics test; curl: scrapes.
# Idempotent and quiet: when everything is present it prints nothing and touches nothing.
set -e
PKGS="build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
libpcap-dev libboost-dev libpq-dev libconfig++-dev libgtest-dev libgmock-dev googletest
libbenchmark-dev postgresql postgresql-client tshark tcpdump tcpreplay ucarp keepalived softflowd nfdump
iproute2 procps psmisc util-linux python3 libseccomp-dev
systemd prometheus curl"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer once, non-interactively.
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
