#!/usr/bin/env bash
# A real Rucio server (PyPI rucio 41.5.1) on loopback for tests and benchmarks, with its own database on the test
# PostgreSQL and one POSIX RSE on local disk:
#
#   scripts/rucio-local.sh start    make the server venv (once), the database and its schema (once), start
#                                   gunicorn on 127.0.0.1, then the RSE, its protocol and limits, and a scope
#   scripts/rucio-local.sh stop     stop gunicorn by its PID file
#   scripts/rucio-local.sh status   exit 0 when /ping answers, else 3
#   scripts/rucio-local.sh env      print the client settings (export lines) for tests
#
# Idempotent: start on a running server only checks the RSE. Everything lives under $RUCIO_HOME, except the
# database. The server venv is kept apart from any client's (both packages ship rucio/, with different pins).
#
# Settings (environment):
#   AUTOPILOT_RUCIO_HOME   state directory (default /var/lib/autopilot-rucio)
#   AUTOPILOT_RUCIO_PORT   the REST port on 127.0.0.1 (default 8090)
#   AUTOPILOT_RUCIO_PG     the PostgreSQL server, host:port (default 127.0.0.1:5432; trust auth as postgres)
#   AUTOPILOT_RUCIO_DB     its database (default autopilot_rucio)
#   PYTHON                 the interpreter the venv is made with (default python3)
#
# What running it here taught: the DSN must say postgresql+psycopg:// (rucio
# installs psycopg 3, not psycopg2); a protocol needs its domain priorities or uploads find no protocol; the
# account needs a limit on the RSE before the first upload; gunicorn must not open its control socket in ~.
set -euo pipefail

RUCIO_HOME=${AUTOPILOT_RUCIO_HOME:-/var/lib/autopilot-rucio}
PORT=${AUTOPILOT_RUCIO_PORT:-8090}
PG=${AUTOPILOT_RUCIO_PG:-127.0.0.1:5432}
DB=${AUTOPILOT_RUCIO_DB:-autopilot_rucio}
PYTHON=${PYTHON:-python3}
RUCIO_VERSION=41.5.1
GUNICORN_VERSION=27.0.1
VENV=$RUCIO_HOME/venv
PIDFILE=$RUCIO_HOME/gunicorn.pid
URL=http://127.0.0.1:$PORT
RSE=AUTOPILOT_RSE
SCOPE=autopilot
ACCOUNT=root
PASSWORD_FILE=$RUCIO_HOME/root.password

log() { echo "rucio-local: $*" >&2; }
die() { log "error: $*"; exit 1; }

ensure_venv() {
    if [ -x "$VENV/bin/gunicorn" ] && "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('rucio') != '$RUCIO_VERSION')" 2>/dev/null; then
        return 0
    fi
    log "installing rucio $RUCIO_VERSION and gunicorn into $VENV (about 40 s)"
    mkdir -p "$RUCIO_HOME"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "rucio[postgresql]==$RUCIO_VERSION" \
        "gunicorn==$GUNICORN_VERSION" >"$RUCIO_HOME/pip.log" 2>&1 \
        || { tail -n 20 "$RUCIO_HOME/pip.log" >&2; die "pip install rucio failed"; }
}

write_config() {
    mkdir -p "$RUCIO_HOME/etc" "$RUCIO_HOME/log" "$RUCIO_HOME/rse" "$RUCIO_HOME/tmp"
    [ -s "$PASSWORD_FILE" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$PASSWORD_FILE")
    local site dsn
    site=$("$VENV/bin/python" -c 'import rucio, os; print(os.path.dirname(os.path.dirname(rucio.__file__)))')
    dsn="postgresql+psycopg://postgres@$PG/$DB"
    cat >"$RUCIO_HOME/etc/rucio.cfg" <<EOF
[common]
logdir = $RUCIO_HOME/log
loglevel = WARNING

[database]
default = $dsn
pool_recycle = 3600
echo = 0
pool_reset_on_return = rollback

[bootstrap]
userpass_identity = $ACCOUNT
userpass_pwd = $(cat "$PASSWORD_FILE")
userpass_email = root@localhost
x509_identity =
gss_identity =
ssh_identity =

[policy]
permission = generic
schema = generic
lfn2pfn_algorithm_default = hash

[alembic]
cfg = $RUCIO_HOME/etc/alembic.ini
EOF
    cat >"$RUCIO_HOME/etc/alembic.ini" <<EOF
[alembic]
script_location = $site/rucio/db/sqla/migrate_repo
sqlalchemy.url = $dsn

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
EOF
}

psql_admin() { psql -h "${PG%:*}" -p "${PG#*:}" -U postgres -d postgres -v ON_ERROR_STOP=1 -tAq "$@"; }

ensure_database() {
    if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
        log "creating database $DB"
        psql_admin -c "CREATE DATABASE $DB" >/dev/null
    fi
    local tables
    tables=$(psql -h "${PG%:*}" -p "${PG#*:}" -U postgres -d "$DB" -tAq -c "SELECT count(*) FROM pg_tables WHERE tablename = 'accounts'")
    if [ "$tables" != 1 ]; then
        log "building Rucio's schema, base VO and root account"
        RUCIO_CONFIG=$RUCIO_HOME/etc/rucio.cfg "$VENV/bin/python" -c \
            "from rucio.db.sqla.util import build_database, create_base_vo, create_root_account; build_database(); create_base_vo(); create_root_account()" \
            >"$RUCIO_HOME/log/bootstrap.log" 2>&1 || { tail -n 20 "$RUCIO_HOME/log/bootstrap.log" >&2; die "bootstrap failed"; }
    fi
}

live_pid() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] && echo "$pid"
}

pings() { curl -sf -o /dev/null --max-time 3 "$URL/ping"; }

start_server() {
    live_pid >/dev/null && pings && return 0
    log "starting gunicorn on 127.0.0.1:$PORT"
    (cd "$RUCIO_HOME" && RUCIO_CONFIG=$RUCIO_HOME/etc/rucio.cfg HOME=$RUCIO_HOME setsid "$VENV/bin/gunicorn" \
        --bind "127.0.0.1:$PORT" --workers 2 --timeout 120 --no-control-socket --daemon --pid "$PIDFILE" \
        --access-logfile "$RUCIO_HOME/log/gunicorn-access.log" --error-logfile "$RUCIO_HOME/log/gunicorn-error.log" \
        rucio.web.rest.flaskapi.v1.main:application </dev/null)
    for _ in $(seq 300); do pings && return 0; sleep 0.1; done
    tail -n 20 "$RUCIO_HOME/log/gunicorn-error.log" >&2
    die "the Rucio server did not answer $URL/ping within 30 s"
}

# The RSE (posix, under $RUCIO_HOME/rse) with read/write/delete priorities, root's limit on it, and the scope,
# through Rucio's own client API as an admin would (the server venv's client, userpass).
ensure_rse() {
    mkdir -p "$RUCIO_HOME/client-etc"
    cat >"$RUCIO_HOME/client-etc/rucio.cfg" <<EOF
[client]
rucio_host = $URL
auth_host = $URL
auth_type = userpass
username = $ACCOUNT
password = $(cat "$PASSWORD_FILE")
account = $ACCOUNT
request_retries = 3
EOF
    chmod 600 "$RUCIO_HOME/client-etc/rucio.cfg"
    RUCIO_CONFIG=$RUCIO_HOME/client-etc/rucio.cfg TMPDIR=$RUCIO_HOME/tmp "$VENV/bin/python" - "$RSE" \
        "$RUCIO_HOME/rse" "$SCOPE" "$ACCOUNT" <<'EOF' >"$RUCIO_HOME/log/rse.log" 2>&1 \
        || { tail -n 20 "$RUCIO_HOME/log/rse.log" >&2; die "setting up the RSE failed"; }
import sys
from rucio.client import Client
from rucio.common.exception import Duplicate, RSENotFound, RSEProtocolNotSupported

rse, prefix, scope, account = sys.argv[1:5]
client = Client()
try:
    client.get_rse(rse)
except RSENotFound:
    client.add_rse(rse)
try:
    client.get_protocols(rse)
except RSEProtocolNotSupported:  # raised, not an empty list, when the RSE has none yet
    client.add_protocol(rse, {
        "scheme": "file", "hostname": "localhost", "port": 0, "prefix": prefix,
        "impl": "rucio.rse.protocols.posix.Default",
        "domains": {"lan": {"read": 1, "write": 1, "delete": 1},
                    "wan": {"read": 1, "write": 1, "delete": 1, "third_party_copy_read": 1,
                            "third_party_copy_write": 1}},
    })
client.set_local_account_limit(account, rse, -1)
try:
    client.add_scope(account, scope)
except Duplicate:
    pass
EOF
}

cmd_start() {
    command -v curl >/dev/null || die "curl is needed"
    command -v psql >/dev/null || die "psql is needed (Debian: postgresql-client)"
    ensure_venv
    write_config
    ensure_database
    start_server
    ensure_rse
    log "Rucio is up at $URL (RSE $RSE in $RUCIO_HOME/rse, scope $SCOPE)"
}

cmd_stop() {
    local pid
    pid=$(live_pid) || return 0
    log "stopping gunicorn (PID $pid)"
    kill -TERM "$pid"
    for _ in $(seq 300); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_env() {
    cat <<EOF
export AUTOPILOT_RUCIO_URL=$URL
export AUTOPILOT_RUCIO_ACCOUNT=$ACCOUNT
export AUTOPILOT_RUCIO_PASSWORD_FILE=$PASSWORD_FILE
export AUTOPILOT_RUCIO_RSE=$RSE
export AUTOPILOT_RUCIO_RSE_DIR=$RUCIO_HOME/rse
export AUTOPILOT_RUCIO_SCOPE=$SCOPE
export AUTOPILOT_RUCIO_CLIENT_CONFIG=$RUCIO_HOME/client-etc/rucio.cfg
EOF
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) pings && { echo "rucio-local: up at $URL"; exit 0; } || { echo "rucio-local: down"; exit 3; } ;;
    env) cmd_env ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
