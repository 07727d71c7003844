# Shared by scripts/arc-local.sh (A-REX 6.17 on the host) and scripts/arc7-local.sh (A-REX 7 in a chroot): the
# loopback CE's arc.conf, A-REX's web-service start script bound to 127.0.0.1, the wait for REST and the stop of
# a daemon. Sourced, not run; the caller defines log, die, live_pid PIDFILE (the live PID it names, or fail) and
# rest_answers, and sets PORT, REST and TIMEOUT.

# Print the arc.conf of a loopback CE with the fork LRMS: one test user's DN mapped to one job user.
#   arc_conf TITLE HOST_KEY HOST_CERT CERT_DIR STATE_DIR PORT USER_DN JOB_USER
arc_conf() {
    local title=$1 host_key=$2 host_cert=$3 cert_dir=$4 state=$5 port=$6 user_dn=$7 job_user=$8
    cat <<CONF
# $title
[common]
hostname = localhost
x509_host_key = $host_key
x509_host_cert = $host_cert
x509_cert_dir = $cert_dir

[authgroup: testusers]
subject = $user_dn

[mapping]
map_to_user = testusers $job_user:$job_user

[lrms]
lrms = fork

[arex]
logfile = $state/log/arex.log
joblog = $state/log/arex-jobs.log
pidfile = $state/run/arex.pid
controldir = $state/control
sessiondir = $state/session
tmpdir = $state/tmp

[arex/data-staging]
logfile = $state/log/datastaging.log

[arex/ws]
wsurl = https://localhost:$port/arex
logfile = $state/log/ws-interface.log
pidfile = $state/run/arex-ws.pid

[arex/ws/jobs]
allowaccess = testusers

[infosys]
logfile = $state/log/infoprovider.log

[infosys/glue2]

[infosys/cluster]

[queue: fork]
CONF
}

# Write SOURCE (A-REX's arc-arex-ws-start) to TARGET listening on 127.0.0.1 only: the stock script listens on
# every interface, and no arc.conf option sets the address.
#   loopback_ws_start SOURCE TARGET
loopback_ws_start() {
    sed 's#<tcp:Listen><tcp:Port>\$arex_port</tcp:Port></tcp:Listen>#<tcp:Listen><tcp:Interface>127.0.0.1</tcp:Interface><tcp:Port>$arex_port</tcp:Port></tcp:Listen>#' \
        "$1" >"$2"
    chmod +x "$2"
}

# Wait up to TIMEOUT s for REST to answer, then make sure A-REX listens on 127.0.0.1 only.
#   await_rest NAME LOG_DIR
await_rest() {
    local deadline=$((SECONDS + TIMEOUT))
    until rest_answers; do
        ((SECONDS < deadline)) || die "$1 REST did not answer at $REST within $TIMEOUT s (see $2)"
        sleep 0.5
    done
    if ss -ltn "sport = :$PORT" | awk 'NR > 1 {print $4}' | grep -qv '^127\.0\.0\.1:'; then
        die "$1 listens on more than 127.0.0.1:$PORT"
    fi
}

# Stop the daemon of PIDFILE: SIGTERM, then SIGKILL after 30 s.
#   stop_pidfile PIDFILE
stop_pidfile() {
    local pid
    pid=$(live_pid "$1") || return 0
    log "stopping $(cat "/proc/$pid/comm" 2>/dev/null) (PID $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
    log "PID $pid ignored SIGTERM for 30 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
}
