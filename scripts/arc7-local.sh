#!/usr/bin/env bash
# A second real ARC CE for tests: Debian 13's A-REX 7.0 (fork LRMS) in a debootstrap chroot, on 127.0.0.1:8444,
# trusting the test CA of scripts/arc-local.sh (so the same user proxy works on both CEs):
#
#   scripts/arc7-local.sh start    build the chroot once, mount, write arc.conf, start A-REX, wait for REST
#   scripts/arc7-local.sh stop     stop both A-REX daemons by their PID files, then unmount what start mounted
#   scripts/arc7-local.sh status   exit 0 when REST answers, else 3
#   scripts/arc7-local.sh env      print the client settings (export lines) for tests
#
# Why a second CE: HTCondor 23.9's arc_gahp (the HTCondor pool of scripts/condor-local.sh, Debian 13, OpenSSL
# 3.5) cannot sign A-REX 6.17's delegation request. 6.17 makes its CSR with X509_REQ_set_version(req, 2)
# (nordugrid/arc v6.17.0 src/hed/libs/delegation/DelegationInterface.cpp, DelegationConsumer::Request), and
# OpenSSL >= 3.4 refuses to verify a CSR whose version is not 0 (openssl/openssl#24677: "X509_REQ_verify_ex:
# unsupported version"), which the gahp does before it signs (htcondor/htcondor src/arc_gahp/
# DelegationInterface.cpp, DelegationProvider::Delegate). Its delegation PUT is then empty, and A-REX answers 500.
# ARC fixed the CSR in 6.18 (nordugrid/arc d4959245, "Cleanup X509 certificate and request versions"); Debian 12
# has only 6.17, Debian 13 has 7.0.0, whose CSR is version 0. Its arc_gahp signs it and pilots run.
#
# Run as root (after scripts/arc-local.sh start, which makes the test CA, the host certificate, the proxy and the
# job user). Every step is idempotent. Everything lives under $AUTOPILOT_ARC7_HOME: the chroot in ./root, A-REX's
# state in the chroot's /srv/arc (control, session, logs, PID files). The host's /tmp is bind-mounted at the
# chroot's /tmp, as in the HTCondor chroot, so a pilot on this CE sees the same shared directories.
#
# Settings (environment):
#   AUTOPILOT_ARC7_HOME     state directory (default /var/lib/autopilot-arc7)
#   AUTOPILOT_ARC7_PORT     the REST port on 127.0.0.1 (default 8444)
#   AUTOPILOT_ARC7_MIRROR   Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   AUTOPILOT_ARC7_TIMEOUT  seconds to wait for REST to answer (default 90)
set -euo pipefail

HOME_DIR=${AUTOPILOT_ARC7_HOME:-/var/lib/autopilot-arc7}
ROOT=$HOME_DIR/root
PORT=${AUTOPILOT_ARC7_PORT:-8444}
MIRROR=${AUTOPILOT_ARC7_MIRROR:-http://deb.debian.org/debian}
TIMEOUT=${AUTOPILOT_ARC7_TIMEOUT:-90}
SUITE=trixie
PACKAGES=(nordugrid-arc-arex nordugrid-arc-arcctl nordugrid-arc-arcctl-service nordugrid-arc-plugins-needed python3)
STATE=/srv/arc                     # inside the chroot
MOUNTS=$HOME_DIR/mounts            # one mount target a line, in the order start mounted them
READY=$ROOT/etc/autopilot-arc7-ready
REST=https://localhost:$PORT/arex/rest/1.0
CHROOT_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive)
ARC_LOCAL=$(dirname "$(realpath "$0")")/arc-local.sh

log() { echo "arc7-local: $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=lib/debian-chroot.sh
. "$(dirname "$(realpath "$0")")/lib/debian-chroot.sh"
# shellcheck source=lib/arc-ce.sh
. "$(dirname "$(realpath "$0")")/lib/arc-ce.sh"
in_root() { "${CHROOT_ENV[@]}" chroot "$ROOT" "$@"; }

# The 6.17 CE's client settings: its test CA, host certificate, proxy and job user are this CE's too.
load_arc_local() {
    eval "$("$ARC_LOCAL" env)"
    [ -f "$AUTOPILOT_ARC_CA_FILE" ] && [ -f "$AUTOPILOT_ARC_HOST_CERT" ] && [ -f "$AUTOPILOT_ARC_PROXY" ] \
        || die "no test CA, host certificate or proxy under ${AUTOPILOT_ARC_CA_DIR%/*}: run $ARC_LOCAL start first"
    getent passwd "$AUTOPILOT_ARC_JOB_USER" >/dev/null \
        || die "no job user $AUTOPILOT_ARC_JOB_USER on the host: run $ARC_LOCAL start first"
}

ensure_chroot() {
    [ -f "$READY" ] && [ -x "$ROOT/usr/share/arc/arc-arex-start" ] && return 0
    if [ -e "$ROOT" ]; then
        log "the chroot in $ROOT is missing or broken: rebuilding it"
        cmd_stop
        remove_tree "$ROOT"
    fi
    mkdir -p "$HOME_DIR"
    build_debian_chroot "$ROOT" "$SUITE" "$MIRROR" "$HOME_DIR" "${READY#"$ROOT"}" "${PACKAGES[@]}"
}

# The job user, with the host's name, uid and gid (as on the 6.17 CE).
ensure_job_user() {
    local user=$AUTOPILOT_ARC_JOB_USER uid gid
    uid=$(id -u "$user"); gid=$(id -g "$user")
    in_root getent group "$user" >/dev/null || in_root groupadd -g "$gid" "$user"
    in_root getent passwd "$user" >/dev/null || in_root useradd -u "$uid" -g "$gid" -M -d /nonexistent -s /bin/sh "$user"
    [ "$(in_root id -u "$user"):$(in_root id -g "$user")" = "$uid:$gid" ] \
        || die "user $user in $ROOT has another uid or gid than on the host ($uid:$gid)"
}

mount_once() {
    local target=$ROOT/$1; shift
    mountpoint -q "$target" && return 0
    mount "$@" "$target"
    echo "$target" >>"$MOUNTS"
}

unmount_recorded() {
    [ -f "$MOUNTS" ] || return 0
    local target
    while read -r target; do
        [ -n "$target" ] && mountpoint -q "$target" || continue
        umount "$target" 2>/dev/null || { log "$target is busy: detaching it lazily"; umount -l "$target"; }
    done < <(tac "$MOUNTS")
    rm -f "$MOUNTS"
}

# The CA (certificates only) and the host certificate; arc.conf; the loopback WS start script; DH parameters.
write_config() {
    local certs=$ROOT/etc/grid-security/certificates item
    cp /etc/hosts /etc/resolv.conf "$ROOT/etc/"
    # The package's postinst made a test CA and drop-ins of its own (its host certificate, "map to nobody"):
    # this CE trusts and uses only those of scripts/arc-local.sh.
    rm -rf "$certs" "$ROOT"/etc/grid-security/testCA* "$ROOT"/etc/arc.conf.d/*testCA*
    mkdir -p "$certs" "$ROOT$STATE"/{etc,host,control,session,log,run,tmp,bin}
    for item in "$AUTOPILOT_ARC_CA_DIR"/*; do
        case $item in *-key.pem|*.srl) continue ;; esac
        cp -L "$item" "$certs/"
    done
    install -m 0644 "$AUTOPILOT_ARC_HOST_CERT" "$ROOT$STATE/host/hostcert.pem"
    install -m 0600 "$AUTOPILOT_ARC_HOST_KEY" "$ROOT$STATE/host/hostkey.pem"
    chmod 1777 "$ROOT$STATE/tmp"   # A-REX requires the sticky bit
    local user_dn
    user_dn=$(openssl x509 -in "$AUTOPILOT_ARC_USER_CERT" -noout -subject -nameopt compat | sed 's/^subject=//')
    arc_conf "A loopback ARC CE (A-REX 7) for AutoPilot's tests, written by scripts/arc7-local.sh" \
        "$STATE/host/hostkey.pem" "$STATE/host/hostcert.pem" /etc/grid-security/certificates "$STATE" "$PORT" \
        "$user_dn" "$AUTOPILOT_ARC_JOB_USER" >"$ROOT$STATE/etc/arc.conf"
    cp "$ROOT$STATE/etc/arc.conf" "$ROOT/etc/arc.conf"
    [ -s "$ROOT$STATE/control/dhparam.pem" ] \
        || (umask 0177; openssl dhparam -out "$ROOT$STATE/control/dhparam.pem" 2048 2>/dev/null)
    loopback_ws_start "$ROOT/usr/share/arc/arc-arex-ws-start" "$ROOT$STATE/bin/arc-arex-ws-start-loopback"
    ! grep -q '<tcp:Listen><tcp:Port>' "$ROOT$STATE/bin/arc-arex-ws-start-loopback" \
        || die "could not bind the WS interface to 127.0.0.1 ($ROOT$STATE/bin/arc-arex-ws-start-loopback)"
}

# The PID in the chroot's PID file $1 when that process still runs in our chroot.
live_pid() {
    local pid
    pid=$(cat "$ROOT$STATE/run/$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$(realpath "$ROOT")" ] \
        && ! grep -q '^State:.*Z' "/proc/$pid/status" && echo "$pid"
}

rest_answers() {
    curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --cert "$AUTOPILOT_ARC_PROXY" --key "$AUTOPILOT_ARC_PROXY" \
        --cacert "$AUTOPILOT_ARC_CA_FILE" -H 'Accept: application/json' "$REST/info" 2>/dev/null | grep -q '^200$'
}

# Start a daemon's script in the chroot, with its own stdio (a caller capturing ours is not kept waiting).
start_daemon() {
    in_root "$@" </dev/null >>"$ROOT$STATE/log/start.log" 2>&1 \
        || { tail -n 20 "$ROOT$STATE/log/start.log" >&2; die "$* failed in $ROOT"; }
}

cmd_start() {
    [ "$(id -u)" = 0 ] || die "run as root"
    load_arc_local
    ensure_chroot
    ensure_job_user
    touch "$MOUNTS"
    mount_once proc -t proc proc
    mount_once tmp --bind /tmp
    if live_pid arex.pid >/dev/null && live_pid arex-ws.pid >/dev/null && rest_answers; then
        log "A-REX 7 is up at $REST"
        return 0
    fi
    local started=$SECONDS
    write_config
    live_pid arex.pid >/dev/null || start_daemon /usr/share/arc/arc-arex-start
    live_pid arex-ws.pid >/dev/null || start_daemon "$STATE/bin/arc-arex-ws-start-loopback"
    await_rest "A-REX 7" "$ROOT$STATE/log"
    log "A-REX 7 is up at $REST in $((SECONDS - started)) s (listening on 127.0.0.1 only)"
}

# The daemons, then the mounts (a fork LRMS job still running keeps /tmp busy: it is detached lazily).
cmd_stop() {
    stop_pidfile arex-ws.pid
    stop_pidfile arex.pid
    unmount_recorded
}

cmd_env() {
    load_arc_local
    cat <<EOF
export AUTOPILOT_ARC7_URL=https://localhost:$PORT/arex
export AUTOPILOT_ARC7_CA_DIR=$AUTOPILOT_ARC_CA_DIR
export AUTOPILOT_ARC7_CA_FILE=$AUTOPILOT_ARC_CA_FILE
export AUTOPILOT_ARC7_PROXY=$AUTOPILOT_ARC_PROXY
export AUTOPILOT_ARC7_SESSION_DIR=$ROOT$STATE/session
export AUTOPILOT_ARC7_JOB_USER=$AUTOPILOT_ARC_JOB_USER
EOF
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) load_arc_local; rest_answers && { echo "arc7-local: up at $REST"; exit 0; } || { echo "arc7-local: down"; exit 3; } ;;
    env) cmd_env ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
