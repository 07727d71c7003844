#!/usr/bin/env bash
# A real single-node HTCondor pool for tests: Debian 13's minicondor in a debootstrap chroot, reachable
# from the host's htcondor2 bindings over 127.0.0.1. Recipe: the HTCondor section of the README.
#
#   scripts/condor-local.sh start    build the chroot once, mount, start condor_master, issue the token
#   scripts/condor-local.sh stop     stop what start started, then unmount exactly what it mounted
#   scripts/condor-local.sh status   say whether the pool is up (exit 0) or not (exit 3)
#   scripts/condor-local.sh stop-schedd | start-schedd   the schedd alone, for fault tests (jobs kept)
#
# Every step is idempotent; start on a running pool only refreshes the token and client env file.
# Jobs run INSIDE the chroot as the job owner: their executable, its interpreter and their output and
# log paths must exist there. The host's /tmp is bind-mounted at the chroot's /tmp, so put pilot
# files under /tmp, in directories the job owner can write. The chroot has Debian's bare python3 (no
# recommends) and nothing of AutoPilot, as a worker node has: pilots arrive as the wrapper and its bundle.
#
# Settings (environment):
#   AUTOPILOT_CONDOR_HOME     state directory (default /var/lib/autopilot-condor; chroot in ./root)
#   AUTOPILOT_CONDOR_USER     job owner, same name/uid/gid on the host and in the chroot (default autopilot)
#   AUTOPILOT_CONDOR_MIRROR   Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   AUTOPILOT_CONDOR_TIMEOUT  seconds to wait for the schedd and a slot (default 60)
set -euo pipefail

HOME_DIR=${AUTOPILOT_CONDOR_HOME:-/var/lib/autopilot-condor}
ROOT=$HOME_DIR/root
JOB_USER=${AUTOPILOT_CONDOR_USER:-autopilot}
MIRROR=${AUTOPILOT_CONDOR_MIRROR:-http://deb.debian.org/debian}
TIMEOUT=${AUTOPILOT_CONDOR_TIMEOUT:-60}
SUITE=trixie
MOUNTS=$HOME_DIR/mounts            # one mount target a line, in the order start mounted them
TOKEN_DIR=$HOME_DIR/tokens.d       # SEC_TOKEN_DIRECTORY for a host client acting as $JOB_USER
CLIENT_ENV=$HOME_DIR/client.env    # the _CONDOR_* settings a host client needs
READY=$ROOT/etc/autopilot-condor-ready
PIDFILE=/run/condor/master.pid     # inside the chroot
CHROOT_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive)

log() { printf 'condor-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=lib/debian-chroot.sh
. "$(dirname "$(realpath "$0")")/lib/debian-chroot.sh"
# Nothing started in the chroot inherits the lock (fd 9): a daemon holding it would block every later call.
in_root() { "${CHROOT_ENV[@]}" chroot "$ROOT" "$@" 9>&-; }

chroot_works() {
    [ -f "$READY" ] && in_root /usr/sbin/condor_master -version >/dev/null 2>&1
}

# Debian's bare interpreter, as a worker node has it (python3 without recommends: no pip, no venv).
ensure_python() {
    in_root /usr/bin/python3 -I -S -c 'import http.client, json, ssl, zipimport' >/dev/null 2>&1 && return 0
    log "installing python3 (no recommends) in the chroot"
    { in_root apt-get update -q && in_root apt-get install -y -q --no-install-recommends python3; } \
        >"$HOME_DIR/apt-python.log" 2>&1 \
        || { tail -n 20 "$HOME_DIR/apt-python.log" >&2; die "apt-get install python3 in the chroot failed"; }
    in_root apt-get clean
}

ensure_chroot() {
    chroot_works && return 0
    if [ -e "$ROOT" ]; then
        log "the chroot in $ROOT is missing or broken: rebuilding it"
        stop_master
        unmount_recorded
        remove_tree "$ROOT"
    fi
    build_debian_chroot "$ROOT" "$SUITE" "$MIRROR" "$HOME_DIR" "${READY#"$ROOT"}" minicondor python3
    chroot_works || die "the new chroot in $ROOT cannot run condor_master -version"
}

# The job owner: same name, uid and gid on the host and in the chroot (root cannot own jobs).
ensure_job_user() {
    if ! getent passwd "$JOB_USER" >/dev/null; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$JOB_USER"
        log "created host user $JOB_USER"
    fi
    local uid gid group
    uid=$(id -u "$JOB_USER"); gid=$(id -g "$JOB_USER"); group=$(id -gn "$JOB_USER")
    if ! in_root getent group "$group" >/dev/null; then
        in_root groupadd -g "$gid" "$group"
    elif [ "$(in_root getent group "$group" | cut -d: -f3)" != "$gid" ]; then
        in_root groupmod -g "$gid" "$group"
    fi
    if ! in_root getent passwd "$JOB_USER" >/dev/null; then
        in_root useradd -u "$uid" -g "$gid" -M -d /nonexistent -s /usr/sbin/nologin "$JOB_USER"
    elif [ "$(in_root id -u "$JOB_USER")" != "$uid" ] || [ "$(in_root id -g "$JOB_USER")" != "$gid" ]; then
        in_root usermod -u "$uid" -g "$gid" "$JOB_USER"
    fi
}

# Mount (with the given mount options) at $ROOT/$target unless something is already there; record it.
mount_once() {
    local target=$ROOT/$1; shift
    mountpoint -q "$target" && return 0
    mount "$@" "$target"
    echo "$target" >>"$MOUNTS"
}

mount_all() {
    touch "$MOUNTS"
    mount_once proc -t proc proc
    mount_once sys -t sysfs sysfs
    if ! mountpoint -q "$ROOT/dev"; then
        mount_once dev --rbind /dev
        mount --make-rslave "$ROOT/dev"   # unmounting it later must not reach the host's /dev
    fi
    mount_once tmp --bind /tmp
}

unmount_recorded() {
    [ -f "$MOUNTS" ] || return 0
    local target
    while read -r target; do
        [ -n "$target" ] && mountpoint -q "$target" || continue
        umount -R "$target" 2>/dev/null || { log "$target is busy: detaching it lazily"; umount -R -l "$target"; }
    done < <(tac "$MOUNTS")
    rm -f "$MOUNTS"
}

# Write the pool config; a running pool re-reads it when it changed.
write_config() {
    local conf=$ROOT/etc/condor/config.d/50-loopback-pool.conf new
    cp /etc/hosts /etc/resolv.conf "$ROOT/etc/"
    new=$(mktemp "${conf%/*}/.new-config.XXXXXX")   # dot files are not read by HTCondor
    cat >"$new" <<'EOF'
# Written by scripts/condor-local.sh: a single-node pool on 127.0.0.1 only, fast cycles for tests.
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
ENABLE_IPV4 = True
ENABLE_IPV6 = False
CONDOR_HOST = 127.0.0.1
NUM_CPUS = 16
# The starter cannot unshare() in this chroot: without these two, jobs are held.
MOUNT_UNDER_SCRATCH =
USE_PID_NAMESPACES = False
SEC_DEFAULT_AUTHENTICATION_METHODS = FS, IDTOKENS, CLAIMTOBE
SCHEDD_INTERVAL = 2
NEGOTIATOR_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
NEGOTIATOR_MIN_INTERVAL = 1
SCHEDD_MIN_INTERVAL = 1
UPDATE_INTERVAL = 2
STARTER_UPDATE_INTERVAL = 2
SHADOW_QUEUE_UPDATE_INTERVAL = 2
JOB_START_DELAY = 0
JOB_START_COUNT = 50
# periodic_hold / periodic_remove every 2 s (default 60 s), so tests see the submit-description limits act.
PERIODIC_EXPR_INTERVAL = 2
MAX_PERIODIC_EXPR_INTERVAL = 10
CLAIM_PARTITIONABLE_LEFTOVERS = True
# The gridmanager asks a grid CE for its jobs' states every 10 s (default 60 s), and pings a CE it found down
# every 10 s (default 300 s), so tests see states sooner and see it follow a CE's jobs again soon after the CE is back.
GRIDMANAGER_JOB_PROBE_INTERVAL = 10
GRIDMANAGER_RESOURCE_PROBE_INTERVAL = 10
EOF
    chmod 0644 "$new"
    if cmp -s "$new" "$conf"; then
        rm -f "$new"
        return 0
    fi
    mv "$new" "$conf"
    if [ -n "$(master_pid)" ]; then
        log "pool config changed: condor_reconfig"
        in_root condor_reconfig >/dev/null || die "condor_reconfig failed"
    fi
}

# PID of our condor_master, if it runs and its root is our chroot; nothing otherwise.
master_pid() {
    local pid
    pid=$(cat "$ROOT$PIDFILE" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] && [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$(realpath "$ROOT")" ] \
        && echo "$pid"
    return 0
}

# Every process whose root is our chroot (they can only have come from our condor_master).
chroot_pids() {
    local root p
    root=$(realpath "$ROOT")
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && echo "${p#/proc/}"
    done
    return 0
}

start_master() {
    [ -n "$(master_pid)" ] && return 0
    install -d -o condor -g condor "$ROOT/run/condor" 2>/dev/null \
        || in_root install -d -o condor -g condor /run/condor
    rm -f "$ROOT$PIDFILE"
    # Its own stdio, so that a caller capturing ours (pytest, CI) is not kept waiting by the daemon.
    in_root /usr/sbin/condor_master -pidfile "$PIDFILE" </dev/null >"$HOME_DIR/master.out" 2>&1 \
        || { cat "$HOME_DIR/master.out" >&2; die "condor_master failed to start"; }
    local i
    for i in $(seq 50); do [ -n "$(master_pid)" ] && return 0; sleep 0.1; done
    show_logs
    die "condor_master did not start (no live PID in $ROOT$PIDFILE)"
}

show_logs() {
    local f
    for f in MasterLog CollectorLog SchedLog StartLog NegotiatorLog; do
        [ -f "$ROOT/var/log/condor/$f" ] || continue
        log "--- last lines of $ROOT/var/log/condor/$f"
        tail -n 15 "$ROOT/var/log/condor/$f" >&2
    done
}

wait_for_pool() {
    local deadline=$((SECONDS + TIMEOUT)) schedd slot
    while :; do
        schedd=$(in_root condor_status -schedd -af Name 2>/dev/null | head -n 1)
        slot=$(in_root condor_status -startd -af Name 2>/dev/null | head -n 1)
        [ -n "$schedd" ] && [ -n "$slot" ] && return 0
        if [ $SECONDS -ge $deadline ]; then
            show_logs
            die "no schedd${schedd:+ (schedd $schedd is up)} or no slot${slot:+ (slot $slot is up)}" \
                "in the collector after ${TIMEOUT} s"
        fi
        sleep 0.3
    done
}

# An IDTOKEN for the job owner, where a host client running as root finds it (SEC_TOKEN_DIRECTORY).
# Issued on every start: the signing key changes whenever the chroot is rebuilt.
issue_token() {
    local domain tmp
    domain=$(in_root condor_config_val UID_DOMAIN)
    install -d -m 0700 "$TOKEN_DIR"
    tmp=$(mktemp "$HOME_DIR/token.XXXXXX")
    in_root condor_token_create -identity "$JOB_USER@$domain" >"$tmp" \
        || { rm -f "$tmp"; die "condor_token_create for $JOB_USER@$domain failed"; }
    chmod 0600 "$tmp"
    mv "$tmp" "$TOKEN_DIR/$JOB_USER"
    tmp=$(mktemp "$HOME_DIR/client.env.XXXXXX")
    # IDTOKENS only: with FS first, a client running as root would be root, and root cannot own jobs.
    # No channel binding for FS: the 25.x client insists on it and this 23.x pool lacks it.
    cat >"$tmp" <<EOF
_CONDOR_CONDOR_HOST=127.0.0.1
_CONDOR_SEC_TOKEN_DIRECTORY=$TOKEN_DIR
_CONDOR_SEC_CLIENT_AUTHENTICATION_METHODS=IDTOKENS
_CONDOR_SEC_FS_ENFORCE_CHANNEL_BINDING=False
AUTOPILOT_CONDOR_USER=$JOB_USER
EOF
    chmod 0644 "$tmp"
    mv "$tmp" "$CLIENT_ENV"
}

stop_master() {
    local pid i
    pid=$(master_pid)
    if [ -n "$pid" ]; then
        log "stopping condor_master (PID $pid)"
        kill -TERM "$pid"
        for i in $(seq 300); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        [ -d "/proc/$pid" ] && { log "condor_master $pid ignored SIGTERM for 30 s: killing it"; kill -KILL "$pid"; }
    fi
    [ -d "$ROOT" ] || return 0
    for i in $(seq 50); do [ -z "$(chroot_pids)" ] && return 0; sleep 0.1; done
    pid=$(chroot_pids | tr '\n' ' ')
    log "killing processes left in the chroot: $pid"
    # shellcheck disable=SC2086
    kill -KILL $pid 2>/dev/null || true
}

cmd_start() {
    local started=$SECONDS
    install -d -m 0755 "$HOME_DIR"
    ensure_chroot
    ensure_python
    ensure_job_user
    mount_all
    write_config
    start_master
    wait_for_pool
    issue_token
    log "pool up in $((SECONDS - started)) s (condor_master PID $(master_pid)); client settings in $CLIENT_ENV:"
    cat "$CLIENT_ENV"
}

cmd_stop() {
    [ -d "$HOME_DIR" ] || { log "nothing to stop"; return 0; }
    [ -d "$ROOT" ] && stop_master
    unmount_recorded
    log "stopped"
}

cmd_status() {
    local pid=""
    [ -d "$ROOT" ] && pid=$(master_pid)
    if [ -z "$pid" ]; then
        echo "condor-local: not running"
        return 3
    fi
    echo "condor-local: condor_master PID $pid, chroot $ROOT, client settings in $CLIENT_ENV"
    in_root condor_status -any -af MyType Name 2>/dev/null | sed 's/^/  /'
}

# The schedd alone, through its master (fault tests: the schedd down while the rest of the pool runs).
# The job queue lives in the schedd's spool, so its jobs come back with it.
cmd_stop_schedd() {
    [ -n "$(master_pid)" ] || die "the pool is not running"
    in_root condor_off -daemon schedd >/dev/null || die "condor_off -daemon schedd failed"
    local i
    for i in $(seq 100); do [ -z "$(in_root condor_status -schedd -af Name 2>/dev/null)" ] && break; sleep 0.1; done
    log "schedd stopped"
}

cmd_start_schedd() {
    [ -n "$(master_pid)" ] || die "the pool is not running"
    in_root condor_on -daemon schedd >/dev/null || die "condor_on -daemon schedd failed"
    wait_for_pool
    local deadline=$((SECONDS + TIMEOUT))
    # In the collector is not yet taking commands: wait until it answers a queue query.
    until in_root condor_q -allusers -totals >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && { show_logs; die "the schedd does not answer condor_q after ${TIMEOUT} s"; }
        sleep 0.2
    done
    log "schedd started"
}

[ "$(id -u)" = 0 ] || die "run as root (it builds a chroot and mounts file systems)"
case ${1:-} in
    start | stop | status | stop-schedd | start-schedd)
        install -d -m 0755 "$HOME_DIR"
        exec 9>"$HOME_DIR/lock"
        flock 9   # one start/stop at a time (parallel test workers may all call start)
        "cmd_${1//-/_}"
        ;;
    *) echo "usage: $0 start|stop|status|stop-schedd|start-schedd" >&2; exit 2 ;;
esac
