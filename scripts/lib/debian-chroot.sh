# Shared by scripts/condor-local.sh and scripts/arc7-local.sh: a Debian chroot built with debootstrap, and the
# removal of a tree that refuses to cross a mount. Sourced, not run; the caller defines log, die and CHROOT_ENV
# (the command prefix, env -i ..., that commands inside the chroot run with).

# True when anything is mounted at or below directory $1.
has_mounts_under() {
    local dir
    dir=$(realpath -m "$1")
    awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# Remove directory $1, refusing if anything is mounted below it (it could be the host's /tmp or /dev).
remove_tree() {
    [ -e "$1" ] || return 0
    has_mounts_under "$1" && die "refusing to remove $1: something is still mounted below it (run: $0 stop)"
    rm -rf --one-file-system "$1"
}

# Build a minbase chroot of SUITE from MIRROR with PACKAGES (no recommends, no service started), in ROOT.new,
# logs in LOG_DIR; write READY (a path inside the chroot) last, then move it to ROOT.
#   build_debian_chroot ROOT SUITE MIRROR LOG_DIR READY PACKAGES...
build_debian_chroot() {
    local root=$1 suite=$2 mirror=$3 log_dir=$4 ready=$5 started=$SECONDS
    shift 5
    local new=$root.new
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        apt-get install -y -q debootstrap >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; } \
            || die "apt-get install debootstrap failed"
    }
    mkdir -p "$log_dir"
    remove_tree "$new"
    log "building the $suite chroot in $root (debootstrap, about 30 s)"
    debootstrap --variant=minbase "$suite" "$new" "$mirror" >"$log_dir/debootstrap.log" 2>&1 \
        || { tail -n 20 "$log_dir/debootstrap.log" >&2; die "debootstrap $suite from $mirror failed"; }
    cp /etc/hosts /etc/resolv.conf "$new/etc/"
    printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"   # no service starts during apt-get
    chmod 0755 "$new/usr/sbin/policy-rc.d"
    log "installing $* in the chroot (about 10 s)"
    { "${CHROOT_ENV[@]}" chroot "$new" apt-get update -q \
        && "${CHROOT_ENV[@]}" chroot "$new" apt-get install -y -q --no-install-recommends "$@"; } \
        >"$log_dir/apt.log" 2>&1 \
        || { tail -n 20 "$log_dir/apt.log" >&2; die "apt-get install $* in the chroot failed"; }
    "${CHROOT_ENV[@]}" chroot "$new" apt-get clean
    date -u +%FT%TZ >"$new$ready"
    mv "$new" "$root"
    log "chroot built in $((SECONDS - started)) s"
}
