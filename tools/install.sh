#!/bin/sh
# make install: binaries, service scripts (LSB, rc.subr, systemd), HA scripts, sample config, schema and man pages.
# usage: tools/install.sh BIN_DIR DESTDIR PREFIX
set -eu
BIN=$1
DESTDIR=${2:-}
PREFIX=${3:-/usr/local}
ROOT="$DESTDIR$PREFIX"
SRC=$(cd "$(dirname "$0")/.." && pwd)

install -d "$ROOT/sbin" "$ROOT/bin" "$ROOT/share/examples/angel" "$ROOT/share/angel/rc.d" \
    "$ROOT/share/man/man1" "$ROOT/share/man/man5" "$ROOT/share/man/man8" "$DESTDIR/etc/init.d" \
    "$DESTDIR/etc/systemd/system" "$ROOT/libexec/angel-flowmeter"
for b in angel-ctld angel-capd angel-procd angel-netd angelctl; do
    install -m 0755 "$BIN/$b" "$ROOT/sbin/$b"
done
install -m 0755 "$BIN/angel-sink" "$ROOT/bin/angel-sink"
[ -x "$BIN/angel-gen-trace" ] && install -m 0755 "$BIN/angel-gen-trace" "$ROOT/bin/angel-gen-trace"
# The ucarp and keepalived scripts of docs/ha.md (they find ha-state-write next to themselves).
for h in ucarp-vip-up ucarp-vip-down ucarp-state-up ucarp-state-down keepalived-notify ha-state-write; do
    install -m 0755 "$SRC/tools/ha/$h" "$ROOT/libexec/angel-flowmeter/$h"
done
install -m 0644 "$SRC/docs/flowmeter.conf.sample" "$ROOT/share/examples/angel/flowmeter.conf.sample"
[ -f "$SRC/db/schema.sql" ] && install -m 0644 "$SRC/db/schema.sql" "$ROOT/share/angel/schema.sql"
install -m 0644 "$SRC/docs/angel-flowmeter.conf.5" "$ROOT/share/man/man5/angel-flowmeter.conf.5"
install -m 0644 "$SRC/docs/angel-ctld.8" "$ROOT/share/man/man8/angel-ctld.8"
install -m 0644 "$SRC/docs/angelctl.8" "$ROOT/share/man/man8/angelctl.8"
install -m 0644 "$SRC/docs/angel-sink.1" "$ROOT/share/man/man1/angel-sink.1"
install -m 0755 "$SRC/rc.d/angel_flowmeter" "$ROOT/share/angel/rc.d/angel_flowmeter"
# The Linux service script, pointed at this prefix.
sed "s|/usr/local|$PREFIX|g" "$SRC/rc.d/angel-flowmeter" > "$DESTDIR/etc/init.d/angel-flowmeter"
chmod 0755 "$DESTDIR/etc/init.d/angel-flowmeter"
# The systemd unit beside it, the same way (where systemd runs, it takes the script's place).
sed "s|/usr/local|$PREFIX|g" "$SRC/rc.d/angel-flowmeter.service" > "$DESTDIR/etc/systemd/system/angel-flowmeter.service"
chmod 0644 "$DESTDIR/etc/systemd/system/angel-flowmeter.service"

# The unprivileged user for procd and netd, on a real install only.
if [ -z "$DESTDIR" ] && [ "$(id -u)" -eq 0 ] && ! getent passwd angel >/dev/null; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin angel
    echo "install: created system user angel"
fi
echo "install: done under $ROOT"
