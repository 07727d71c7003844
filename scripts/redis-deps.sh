#!/usr/bin/env bash
# Install Debian's redis-server, the broker of `autopilot up --executor celery`, when missing. Idempotent.
# Only the binary is wanted: `autopilot up` runs its own Redis (loopback, a password, AUTOPILOT_REDIS_PORT), so
# the package's own service is kept from starting (policy-rc.d answers 101 during the install).
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "redis-deps: redis-server is missing; install Debian's redis-server" >&2
    exit 1
fi
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends redis-server >/tmp/redis-deps-apt.log 2>&1 \
    || { apt-get update -q >>/tmp/redis-deps-apt.log 2>&1 \
        && apt-get install -y -q --no-install-recommends redis-server >>/tmp/redis-deps-apt.log 2>&1; } \
    || { tail -n 20 /tmp/redis-deps-apt.log >&2; exit 1; }
command -v redis-server >/dev/null
