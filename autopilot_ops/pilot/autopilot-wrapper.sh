#!/bin/sh
# autopilot-wrapper.sh: what the batch system runs. Checks the node, fetches the pilot code (optional),
# starts the pilot, forwards signals to it, kills it if its log goes stale, translates its exit code,
# cleans up, and prints a one-line summary.
#
# usage: autopilot-wrapper.sh [wrapper options] [--] <options of `autopilot pilot run`>
#   --pilot-url URL       fetch the pilot code: a pilot bundle (`autopilot pilot bundle`, a zipapp needing only
#                         python3; any URL not ending in .whl/.tar.gz/.tgz), a .whl, or a .tar.gz/.tgz holding
#                         autopilot_ops/ and its egg-info; "{version}" in URL is replaced by --pilot-version.
#                         Fetched with curl, else wget, else python's urllib.
#   --pilot-version V     a pinned version, or "current" (default)
#   --pilot-sha256 HEX    sha256 of the pilot code; for "current" it may come from URL.sha256 instead
#   --python PATH         python 3.10+ to run the pilot with (default: python3)
#   --workdir DIR         make the wrapper's scratch dir under DIR (default: $TMPDIR or /tmp)
#   --keep-workdir        do not remove the scratch dir at the end
#   --min-disk-mb N       free space required in the work dir (default 1024)
#   --stale-timeout N     kill the pilot when its log has not grown for N s (default 3600, 0: never)
#   --kill-grace N        seconds between SIGTERM and SIGKILL when the wrapper stops the pilot (default 30)
#   --pilot-log PATH      where the pilot's output goes (default: in the scratch dir, printed at the end)
#
# The pilot runs in the scratch dir (so relative paths in its options are taken from there), with its job
# work dirs under it; its home (kept final updates) is outside, in $AUTOPILOT_PILOT_HOME or ~/.autopilot.
# $AUTOPILOT_KEPT_DIR (where the pilot hands over final updates it could not deliver) is created first thing, a
# relative one in the directory the wrapper starts in: HTCondor's file transfer brings it back from the batch
# job's scratch dir, and holds the job if it is missing.
#
# Exit codes (after PanDAWMS pilot wrapper runpilot3-wrapper.sh, ptrlv/adc): 0 for success and for "no jobs"
# (pilot exit 82); 1 when a signal (SIGTERM from the batch system, ...) ended the pilot; 2 when this
# wrapper's stale-log supervisor killed it; 3 when the wrapper's own checks or the code download failed;
# any other pilot exit code (79: server unreachable, ...) is passed through.

set -u

PROG=autopilot-wrapper
pilot_url=""
pilot_version="current"
pilot_sha256=""
python="python3"
base_dir="${TMPDIR:-/tmp}"
keep_workdir=0
min_disk_mb=1024
stale_timeout=3600
kill_grace=30
pilot_log=""
bundle=""
started_at=$(date +%s)

log() { echo "$PROG: $*" >&2; }
die() { log "error: $*"; summary 3 "-" "$*"; exit 3; }

summary() {  # <wrapper exit> <pilot exit> <reason>
    echo "$PROG: summary host=$(hostname) wrapper_exit=$1 pilot_exit=$2 duration=$(( $(date +%s) - started_at ))s reason=\"$3\""
}

while [ $# -gt 0 ]; do
    case "$1" in
        --pilot-url) pilot_url="$2"; shift 2 ;;
        --pilot-version) pilot_version="$2"; shift 2 ;;
        --pilot-sha256) pilot_sha256="$2"; shift 2 ;;
        --python) python="$2"; shift 2 ;;
        --workdir) base_dir="$2"; shift 2 ;;
        --keep-workdir) keep_workdir=1; shift ;;
        --min-disk-mb) min_disk_mb="$2"; shift 2 ;;
        --stale-timeout) stale_timeout="$2"; shift 2 ;;
        --kill-grace) kill_grace="$2"; shift 2 ;;
        --pilot-log) pilot_log="$2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done

if [ -n "${AUTOPILOT_KEPT_DIR:-}" ]; then
    case "$AUTOPILOT_KEPT_DIR" in /*) ;; *) AUTOPILOT_KEPT_DIR="$PWD/$AUTOPILOT_KEPT_DIR" ;; esac
    export AUTOPILOT_KEPT_DIR
    mkdir -p "$AUTOPILOT_KEPT_DIR" 2>/dev/null || log "warning: cannot create the kept dir $AUTOPILOT_KEPT_DIR"
fi
case "$pilot_log" in ""|/*) ;; *) pilot_log="$PWD/$pilot_log" ;; esac
case "$pilot_version" in ''|*[!A-Za-z0-9._+-]*) die "bad --pilot-version '$pilot_version'" ;; esac
for number in "$min_disk_mb" "$stale_timeout" "$kill_grace"; do
    case "$number" in ''|*[!0-9]*) die "expected a whole number of MB or seconds, got '$number'" ;; esac
done

# --- checks: python, work dir, disk space ---
command -v "$python" >/dev/null 2>&1 || die "python ($python) not found"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null \
    || die "$python is older than Python 3.10"
[ -d "$base_dir" ] && [ -w "$base_dir" ] || die "work dir base $base_dir is not a writable directory"
workdir=$(mktemp -d "$base_dir/autopilot-wrapper.XXXXXX") || die "cannot create a work dir in $base_dir"
workdir=$(cd "$workdir" && pwd -P)
cleanup() {
    if [ "$keep_workdir" = 1 ]; then log "work dir kept: $workdir"; else rm -rf "$workdir"; fi
}
free_kb=$(df -Pk "$workdir" | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $(( min_disk_mb * 1024 )) ]; then
    cleanup; die "only $(( ${free_kb:-0} / 1024 )) MB free in $base_dir, $min_disk_mb MB required"
fi

# --- the pilot code: fetched by URL and checked, or the installed one ---
fetch() {  # <url> <file>: with curl, else wget, else python's urllib (a bare node may have neither tool)
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --connect-timeout 30 --max-time 300 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -T 60 -O "$2" "$1"
    else
        "$python" -I -S - "$1" "$2" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as reply, open(sys.argv[2], "wb") as out:
    while chunk := reply.read(1 << 20):
        out.write(chunk)
EOF
    fi
}
sha256_of() {  # with coreutils' sha256sum when the node has it (no interpreter start), else python's hashlib
    if command -v sha256sum >/dev/null 2>&1; then
        set -- $(sha256sum "$1") && printf '%s\n' "$1"
    else
        "$python" -I -S -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
    fi
}

if [ -n "$pilot_url" ]; then
    url=$(printf '%s' "$pilot_url" | sed "s/{version}/$pilot_version/g")
    if [ -z "$pilot_sha256" ]; then
        [ "$pilot_version" = current ] || { cleanup; die "pinned pilot version $pilot_version needs --pilot-sha256"; }
        fetch "$url.sha256" "$workdir/pilot.sha256" 2>/dev/null \
            || { cleanup; die "no --pilot-sha256 and no $url.sha256 to check the pilot code against"; }
        pilot_sha256=$(awk '{ print $1; exit }' "$workdir/pilot.sha256")
    fi
    case "$url" in
        *.whl) code="$workdir/$(basename "$url")" ;;
        *.tar.gz|*.tgz) code="$workdir/pilot.tar.gz" ;;
        *) code="$workdir/pilot.pyz" ;;
    esac
    fetch "$url" "$code" 2>"$workdir/fetch.err" || { cleanup; die "cannot fetch $url: $(tail -n 1 "$workdir/fetch.err")"; }
    actual=$(sha256_of "$code")
    if [ "$actual" != "$(printf '%s' "$pilot_sha256" | tr 'A-F' 'a-f')" ]; then
        cleanup; die "pilot code $url has sha256 $actual, expected $pilot_sha256: refusing to run it"
    fi
    if [ "$code" = "$workdir/pilot.pyz" ]; then
        bundle="$code"
    elif [ "${code%.whl}" != "$code" ]; then
        pythonpath="$code"
    else
        mkdir "$workdir/code" && tar -xzf "$code" -C "$workdir/code" || { cleanup; die "cannot unpack $url"; }
        pythonpath=$(dirname "$(find "$workdir/code" -type d -name autopilot_ops | head -n 1)")
        [ -n "$pythonpath" ] && [ "$pythonpath" != . ] || { cleanup; die "$url holds no autopilot_ops package"; }
    fi
    if [ -z "$bundle" ]; then
        PYTHONPATH="$pythonpath${PYTHONPATH:+:$PYTHONPATH}"
        export PYTHONPATH
    fi
    log "pilot code $url ($actual) at ${bundle:-$pythonpath}"
fi
cd "$workdir" || die "cannot enter $workdir"  # python -m puts the current dir first on sys.path
if [ -z "$bundle" ]; then  # a bundle is whole once its sha256 matched; other code is tried first
    "$python" -c 'import autopilot_ops.pilot.loop' 2>"$workdir/import.err" \
        || { cleanup; die "the pilot cannot be imported: $(tail -n 1 "$workdir/import.err")"; }
fi

# --- start the pilot, forward signals, supervise its log ---
[ -n "$pilot_log" ] || pilot_log="$workdir/pilot.log"
mkdir -p "$workdir/jobs"
if [ -n "$bundle" ]; then  # isolated (-I -S): no site-packages, no PYTHON* variables, only the bundle's code
    "$python" -I -S "$bundle" run --workdir "$workdir/jobs" "$@" >>"$pilot_log" 2>&1 &
else
    "$python" -m autopilot_ops.pilot run --workdir "$workdir/jobs" "$@" >>"$pilot_log" 2>&1 &
fi
pilot_pid=$!
log "pilot started, pid $pilot_pid, log $pilot_log"

forwarded=""
forward() {  # <signal>
    forwarded="$1"
    log "forwarding SIG$1 to the pilot"
    kill -s "$1" "$pilot_pid" 2>/dev/null
}
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward USR1' USR1

supervise() {  # kills the pilot when its log has not grown for $stale_timeout s
    sleeper=""
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    trap - INT USR1
    last_size=-1
    last_change=$(date +%s)
    step=$(( stale_timeout < 10 ? 1 : 5 ))
    while kill -0 "$pilot_pid" 2>/dev/null; do
        sleep "$step" &
        sleeper=$!
        wait "$sleeper"
        size=$(wc -c <"$pilot_log" 2>/dev/null || echo 0)
        now=$(date +%s)
        if [ "$size" != "$last_size" ]; then
            last_size=$size
            last_change=$now
        elif [ $(( now - last_change )) -ge "$stale_timeout" ]; then
            log "pilot log unchanged for $stale_timeout s: stopping the pilot"
            : >"$workdir/supervisor-killed"
            kill -s TERM "$pilot_pid" 2>/dev/null
            waited=0
            while kill -0 "$pilot_pid" 2>/dev/null && [ "$waited" -lt "$kill_grace" ]; do
                sleep 1; waited=$(( waited + 1 ))
            done
            kill -s KILL "$pilot_pid" 2>/dev/null
            return
        fi
    done
}
supervisor_pid=""
if [ "$stale_timeout" -gt 0 ]; then
    supervise &
    supervisor_pid=$!
fi

while :; do
    wait "$pilot_pid"
    pilot_rc=$?
    if [ -n "$forwarded" ] && kill -0 "$pilot_pid" 2>/dev/null; then
        forwarded=""   # the wait was interrupted by a forwarded signal: keep waiting for the pilot
        continue
    fi
    break
done
[ -n "$supervisor_pid" ] && kill "$supervisor_pid" 2>/dev/null
trap - TERM INT USR1

# --- translate the exit code, report, clean up ---
if [ -f "$workdir/supervisor-killed" ]; then
    rc=2; reason="killed by the wrapper: stale pilot log"
else
    case "$pilot_rc" in
        0) rc=0; reason="ok" ;;
        82) rc=0; reason="no jobs in PanDA" ;;
        79) rc=79; reason="PanDA server communication failure" ;;
        129|130|131|134|137|138|143) rc=1; reason="pilot ended by signal $(( pilot_rc - 128 ))" ;;
        *) rc=$pilot_rc; reason="pilot exit code $pilot_rc" ;;
    esac
fi
if [ "$pilot_log" = "$workdir/pilot.log" ]; then
    cat "$pilot_log"
fi
cleanup
summary "$rc" "$pilot_rc" "$reason"
exit "$rc"
