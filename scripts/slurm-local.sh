#!/usr/bin/env bash
# A single-node Slurm cluster for tests and benchmarks:
# scripts/slurm-local.sh start|stop|status|stop-controller|start-controller
#
# For Debian 12 machines without systemd, run as root. Idempotent: `start` installs Debian's packages when
# missing, (re)writes /etc/slurm/slurm.conf, starts munged (as the munge user: as root it refuses), slurmctld
# and slurmd unless they already run, and waits until the node answers. PID files live in $RUN_DIR, so `stop`
# ends only what this script started. A killed daemon stays a zombie for seconds: state Z counts as gone.
set -euo pipefail

RUN_DIR=${AUTOPILOT_SLURM_RUN_DIR:-/run/autopilot-slurm}
START_TIMEOUT_S=${AUTOPILOT_SLURM_START_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm
MUNGE_KEY=/etc/munge/munge.key
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { echo "slurm-local: $*"; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }

# Whether a PID runs the program named (its comm) and is not a zombie (state Z in /proc/PID/stat).
runs() {
    local pid=$1 comm=$2 stat state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    state=${stat##*) }
    state=${state%% *}
    [[ $state != Z && $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]]
}

# The PID in a PID file, when that process still runs the expected program.
live_pid() {
    local pidfile=$1 comm=$2 pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    runs "$pid" "$comm" || return 1
    echo "$pid"
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/slurm-local-apt.log 2>&1; then
        apt-get update -q >>/tmp/slurm-local-apt.log 2>&1 || true
        apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/slurm-local-apt.log 2>&1 \
            || { tail -n 20 /tmp/slurm-local-apt.log >&2; die "apt-get install ${missing[*]} failed"; }
    fi
}

# The node's memory in MiB, as slurmd itself measures it.
real_memory_mb() {
    slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p'
}

render_conf() {
    cat <<EOF
# Written by autopilot scripts/slurm-local.sh: a single-node cluster for tests and benchmarks.
ClusterName=local
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
MaxArraySize=10001
MaxJobCount=50000
MailProg=/bin/true
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=16 Boards=1 SocketsPerBoard=1 CoresPerSocket=16 ThreadsPerCore=1 RealMemory=$(real_memory_mb) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

# Writes slurm.conf when its content changes; returns 0 when it did.
write_conf() {
    local tmp
    tmp=$(mktemp "$CONF.XXXXXX")
    render_conf >"$tmp"
    chmod 0644 "$tmp"
    if cmp -s "$tmp" "$CONF"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$CONF"
    log "wrote $CONF"
}

munge_works() {
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1
}

start_munge() {
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0755 "$RUN_DIR/munge"
    if [[ ! -s $MUNGE_KEY ]]; then
        runuser -u munge -- mungekey --create --keyfile="$MUNGE_KEY"
    fi
    if live_pid "$RUN_DIR/munge/munged.pid" munged >/dev/null; then
        return 0
    fi
    if munge_works; then
        log "munged already runs (not started by this script); using it"
        return 0
    fi
    runuser -u munge -- munged --pid-file="$RUN_DIR/munge/munged.pid"
    munge_works || die "munged started but 'munge -n | unmunge' fails; see /var/log/munge/munged.log"
}

# Starts a Slurm daemon unless the one from our PID file runs; refuses when another copy runs.
start_daemon() {
    local name=$1
    shift
    if live_pid "$RUN_DIR/$name.pid" "$name" >/dev/null; then
        return 0
    fi
    local other
    for other in $(pgrep -x "$name" || true); do
        runs "$other" "$name" && die "$name (pid $other) runs but was not started by this script; stop it first"
    done
    "$name" "$@" || die "$name failed to start; see $LOG_DIR/$name.log"
}

wait_for_node() {
    local deadline=$((SECONDS + START_TIMEOUT_S)) state="" resumed=no
    while ((SECONDS < deadline)); do
        state=$(sinfo -h -n localhost -o %t 2>/dev/null | head -n 1 || true)
        case $state in
            idle | mix | alloc | comp) log "node localhost is $state"; return 0 ;;
            drain* | down)
                if [[ $resumed == no ]]; then
                    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
                    resumed=yes
                fi
                ;;
        esac
        sleep 0.2
    done
    echo "slurm-local: error: node not idle after ${START_TIMEOUT_S}s (sinfo says '${state:-nothing}')" >&2
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"; do
        echo "--- last lines of $f" >&2
        tail -n 20 "$f" >&2 2>/dev/null || true
    done
    exit 1
}

# Sends TERM to the daemon of a PID file, then KILL after 10 s; a zombie counts as gone.
stop_daemon() {
    local pidfile=$1 comm=$2 pid i
    if ! pid=$(live_pid "$pidfile" "$comm"); then
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        live_pid "$pidfile" "$comm" >/dev/null || break
        sleep 0.1
    done
    if live_pid "$pidfile" "$comm" >/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    log "stopped $comm (pid $pid)"
}

stop_all() {
    stop_daemon "$RUN_DIR/slurmd.pid" slurmd
    stop_daemon "$RUN_DIR/slurmctld.pid" slurmctld
    stop_daemon "$RUN_DIR/munge/munged.pid" munged
}

start_all() {
    [[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts daemons)"
    install_packages
    install -d -m 0755 "$RUN_DIR" "$(dirname "$CONF")"
    install -d -o slurm -g slurm -m 0755 "$LOG_DIR" "$STATE_DIR" "$STATE_DIR/slurmctld"
    install -d -m 0755 "$STATE_DIR/slurmd"
    if write_conf; then
        # A changed configuration needs fresh daemons; only ours are restarted.
        stop_daemon "$RUN_DIR/slurmd.pid" slurmd
        stop_daemon "$RUN_DIR/slurmctld.pid" slurmctld
    fi
    start_munge
    start_daemon slurmctld
    start_daemon slurmd -N localhost
    wait_for_node
}

status_all() {
    local rc=0 pid name pidfile
    for name in munged slurmctld slurmd; do
        pidfile=$RUN_DIR/$name.pid
        [[ $name == munged ]] && pidfile=$RUN_DIR/munge/munged.pid
        if pid=$(live_pid "$pidfile" "$name"); then
            echo "$name: running (pid $pid)"
        elif [[ $name == munged ]] && munge_works; then
            echo "$name: running (not started by this script)"
        else
            echo "$name: not running"
            rc=3
        fi
    done
    if command -v sinfo >/dev/null; then
        echo "node: $(sinfo -h -n localhost -o %t 2>&1 | head -n 1)"
    fi
    return "$rc"
}

# Stops slurmctld alone (fault tests: the controller down while slurmd and the jobs go on).
stop_controller() {
    stop_daemon "$RUN_DIR/slurmctld.pid" slurmctld
}

# Starts slurmctld again (it recovers its jobs from StateSaveLocation) and waits until the node answers.
start_controller() {
    [[ $(id -u) == 0 ]] || die "must run as root (it starts daemons)"
    start_daemon slurmctld
    wait_for_node
}

case ${1:-} in
    start) start_all ;;
    stop) stop_all ;;
    status) status_all ;;
    stop-controller) stop_controller ;;
    start-controller) start_controller ;;
    *) echo "usage: $0 start|stop|status|stop-controller|start-controller" >&2; exit 2 ;;
esac
