#!/usr/bin/env bash
# A real NorduGrid ARC CE (Debian 12's A-REX 6.17, fork LRMS) on loopback, for tests and benchmarks:
#
#   scripts/arc-local.sh start    install the packages, make the test CA, host and user certificates and a
#                                 proxy, write arc.conf, start A-REX bound to 127.0.0.1 only, wait for REST
#   scripts/arc-local.sh stop     stop both A-REX daemons by their PID files (jobs are kept)
#   scripts/arc-local.sh status   exit 0 when REST answers, else 3
#   scripts/arc-local.sh env      print the client settings (export lines) for tests and arc* commands
#
# Run as root on a machine without systemd. Every step is idempotent: start on a running CE only renews a proxy
# that has less than 6 h left. Everything lives under $ARC_HOME, except what apt installs, /etc/arc.conf (the
# stock one is kept as $ARC_HOME/arc.conf.dist-orig) and the unix user the grid user is mapped to.
#
# Settings (environment):
#   AUTOPILOT_ARC_HOME     state directory (default /var/lib/autopilot-arc)
#   AUTOPILOT_ARC_PORT     the REST port on 127.0.0.1 (default 8443)
#   AUTOPILOT_ARC_USER     the unix user grid jobs run as (default arcuser)
#   AUTOPILOT_ARC_TIMEOUT  seconds to wait for REST to answer (default 90)
#
# Why a copy of the WS start script: the stock arc-arex-ws-start listens on every interface, and no arc.conf
# option sets the address; the copy adds <tcp:Interface>127.0.0.1</tcp:Interface>. The DH parameters are made
# once (2048 bits), since the stock script otherwise starts a 4096-bit openssl dhparam in the background.
set -euo pipefail

ARC_HOME=${AUTOPILOT_ARC_HOME:-/var/lib/autopilot-arc}
PORT=${AUTOPILOT_ARC_PORT:-8443}
JOB_USER=${AUTOPILOT_ARC_USER:-arcuser}
TIMEOUT=${AUTOPILOT_ARC_TIMEOUT:-90}
PACKAGES=(nordugrid-arc-arex nordugrid-arc-arcctl nordugrid-arc-arcctl-service nordugrid-arc-client
          nordugrid-arc-plugins-arcrest nordugrid-arc-plugins-needed nordugrid-arc-arex-python-lrms)
CA_DIR=$ARC_HOME/ca
HOST_CERT=$ARC_HOME/host/host-localhost-cert.pem
HOST_KEY=$ARC_HOME/host/host-localhost-key.pem
USER_CERT=$ARC_HOME/user/client-arc-test-user-cert.pem
USER_KEY=$ARC_HOME/user/client-arc-test-user-key.pem
PROXY=$ARC_HOME/user/proxy.pem
USER_DN="/DC=org/DC=nordugrid/DC=ARC/O=TestCA/CN=arc test user"
WS_START=$ARC_HOME/bin/arc-arex-ws-start-loopback
REST=https://localhost:$PORT/arex/rest/1.0

log() { echo "arc-local: $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=lib/arc-ce.sh
. "$(dirname "$(realpath "$0")")/lib/arc-ce.sh"

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]} (about 15 s)"
    export DEBIAN_FRONTEND=noninteractive
    mkdir -p "$ARC_HOME"
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$ARC_HOME/apt.log" 2>&1; then
        apt-get update -q >>"$ARC_HOME/apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$ARC_HOME/apt.log" 2>&1 \
            || { tail -n 20 "$ARC_HOME/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
    fi
}

# The test CA for localhost, its host certificate, a user certificate (the grid identity) and the job user.
ensure_certificates() {
    mkdir -p "$CA_DIR" "$ARC_HOME/host" "$ARC_HOME/user"
    [ -f "$ARC_HOME/arc.conf.dist-orig" ] || { [ -f /etc/arc.conf ] && cp -a /etc/arc.conf "$ARC_HOME/arc.conf.dist-orig"; } || true
    if [ ! -f "$CA_DIR/ARC-TestCA-local.pem" ]; then
        log "making the test CA"
        arcctl test-ca --ca-dir "$CA_DIR" --ca-id local init >/dev/null
    fi
    [ -f "$HOST_CERT" ] || (cd "$ARC_HOME/host" && arcctl test-ca --ca-dir "$CA_DIR" --ca-id local hostcert -n localhost >/dev/null)
    [ -f "$USER_CERT" ] || (cd "$ARC_HOME/user" && arcctl test-ca --ca-dir "$CA_DIR" --ca-id local usercert -n "arc test user" --no-auth >/dev/null)
    getent passwd "$JOB_USER" >/dev/null || useradd -M -d "$ARC_HOME/home/$JOB_USER" -s /bin/sh "$JOB_USER"
}

# An RFC proxy of the user certificate, renewed when it has less than 6 h left.
ensure_proxy() {
    if [ -f "$PROXY" ] && openssl x509 -in "$PROXY" -noout -checkend 21600 >/dev/null 2>&1; then
        return 0
    fi
    log "making a 12 h proxy in $PROXY"
    mkdir -p "$ARC_HOME/clienthome"
    HOME=$ARC_HOME/clienthome X509_CERT_DIR=$CA_DIR X509_USER_CERT=$USER_CERT X509_USER_KEY=$USER_KEY \
        X509_USER_PROXY=$PROXY arcproxy >/dev/null || die "arcproxy failed"
}

write_config() {
    mkdir -p "$ARC_HOME/etc" "$ARC_HOME/control" "$ARC_HOME/session" "$ARC_HOME/log" "$ARC_HOME/run" \
        "$ARC_HOME/tmp" "$ARC_HOME/bin"
    chmod 1777 "$ARC_HOME/tmp"   # A-REX's validator requires the sticky bit
    arc_conf "A loopback ARC CE (A-REX 6.17) for AutoPilot's tests, written by scripts/arc-local.sh" \
        "$HOST_KEY" "$HOST_CERT" "$CA_DIR" "$ARC_HOME" "$PORT" "$USER_DN" "$JOB_USER" >"$ARC_HOME/etc/arc.conf"
    cp "$ARC_HOME/etc/arc.conf" /etc/arc.conf
    [ -s "$ARC_HOME/control/dhparam.pem" ] || (umask 0177; openssl dhparam -out "$ARC_HOME/control/dhparam.pem" 2048 2>/dev/null)
    loopback_ws_start /usr/share/arc/arc-arex-ws-start "$WS_START"
    grep -q '<tcp:Interface>127.0.0.1</tcp:Interface>' "$WS_START" || die "could not bind the WS interface to 127.0.0.1 ($WS_START)"
}

# The PID in PID file $1 when that process still runs.
live_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" && echo "$pid"
}

rest_answers() {
    curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --cert "$PROXY" --key "$PROXY" \
        --cacert "$CA_DIR/ARC-TestCA-local.pem" -H 'Accept: application/json' "$REST/info" 2>/dev/null | grep -q '^200$'
}

cmd_start() {
    [ "$(id -u)" = 0 ] || die "run as root"
    install_packages
    ensure_certificates
    ensure_proxy
    if live_pid "$ARC_HOME/run/arex.pid" >/dev/null && live_pid "$ARC_HOME/run/arex-ws.pid" >/dev/null && rest_answers; then
        log "A-REX is up at $REST"
        return 0
    fi
    write_config
    /usr/lib/arc/arc-config-check --config /etc/arc.conf >"$ARC_HOME/log/config-check.log" 2>&1 \
        || { tail -n 20 "$ARC_HOME/log/config-check.log" >&2; die "arc-config-check refused /etc/arc.conf"; }
    live_pid "$ARC_HOME/run/arex.pid" >/dev/null || /usr/share/arc/arc-arex-start >"$ARC_HOME/log/start.log" 2>&1 \
        || { tail -n 20 "$ARC_HOME/log/start.log" >&2; die "arc-arex-start failed"; }
    live_pid "$ARC_HOME/run/arex-ws.pid" >/dev/null || "$WS_START" >>"$ARC_HOME/log/start.log" 2>&1 \
        || { tail -n 20 "$ARC_HOME/log/start.log" >&2; die "the A-REX WS interface did not start"; }
    await_rest "A-REX" "$ARC_HOME/log"
    log "A-REX is up at $REST (listening on 127.0.0.1 only)"
}

cmd_stop() {
    stop_pidfile "$ARC_HOME/run/arex-ws.pid"
    stop_pidfile "$ARC_HOME/run/arex.pid"
}

cmd_env() {
    cat <<EOF
export AUTOPILOT_ARC_URL=https://localhost:$PORT/arex
export AUTOPILOT_ARC_CA_DIR=$CA_DIR
export AUTOPILOT_ARC_CA_FILE=$CA_DIR/ARC-TestCA-local.pem
export AUTOPILOT_ARC_PROXY=$PROXY
export AUTOPILOT_ARC_USER_CERT=$USER_CERT
export AUTOPILOT_ARC_USER_KEY=$USER_KEY
export AUTOPILOT_ARC_HOST_CERT=$HOST_CERT
export AUTOPILOT_ARC_HOST_KEY=$HOST_KEY
export AUTOPILOT_ARC_SESSION_DIR=$ARC_HOME/session
export AUTOPILOT_ARC_JOB_USER=$JOB_USER
EOF
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) rest_answers && { echo "arc-local: up at $REST"; exit 0; } || { echo "arc-local: down"; exit 3; } ;;
    env) cmd_env ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
