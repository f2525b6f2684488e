#!/bin/sh
# Make sure a Docker daemon answers on this machine; start one if none does.
#
# Idempotent: when `docker info` already answers, nothing is installed or started and the pid file is
# left alone. Otherwise it installs Debian's `docker.io` (and `debootstrap`, which
# scripts/build-base-image.sh needs) with apt-get when missing, starts Debian's /usr/sbin/dockerd bound
# ONLY to its unix socket (no TCP listener), waits until it answers, and writes the PID of the daemon
# it started to $DOCKERD_PIDFILE (default: <repo>/.cache/dockerd.pid) so the caller can stop exactly
# that process later with scripts/stop-docker.sh.
#
# Environment:
#   DOCKERD_PIDFILE  pid file of the daemon this script starts (default <repo>/.cache/dockerd.pid)
#   DOCKERD_LOG      daemon log (default <repo>/.cache/dockerd.log)
#   DOCKERD_SOCKET   unix socket path (default /var/run/docker.sock)
#   DOCKERD_TIMEOUT  seconds to wait for each start attempt (default 60)
#   DOCKERD_FLAGS    extra dockerd flags, added to every attempt
#
# What was needed in the CI sandbox (Debian 12 Firecracker VM, root, kernel 6.18, cgroup v1, no systemd,
# /usr/sbin/policy-rc.d exits 101 so apt never starts the service itself), measured 2026-11:
#   * `dockerd -H unix:///var/run/docker.sock` starts as is in ~1 s: overlay2 works on the ext4 root,
#     iptables-nft works, so the default docker0 bridge network is available. No extra flags needed.
#   * Fallbacks are kept for sandboxes where that is not so: if overlay2 is refused, `vfs` (slow, big,
#     but works anywhere); if iptables/bridge setup fails, `--iptables=false --bridge=none` (containers
#     then only have `--network host`, which is enough: our servers bind 127.0.0.1).
#   * The docker client that comes first on PATH here is /usr/local/bin/docker 28.2.2 (API 1.50); it
#     negotiates down to Debian's daemon 20.10.24 (API 1.41) and works, as does Debian's
#     /usr/bin/docker. If the PATH client ever stops working with this daemon, a hint is printed:
#     set DOCKER=/usr/bin/docker (the other scripts honour $DOCKER).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
pidfile=${DOCKERD_PIDFILE:-$repo/.cache/dockerd.pid}
logfile=${DOCKERD_LOG:-$repo/.cache/dockerd.log}
socket=${DOCKERD_SOCKET:-/var/run/docker.sock}
timeout=${DOCKERD_TIMEOUT:-60}
extra_flags=${DOCKERD_FLAGS:-}
docker_cli=${DOCKER:-docker}

say() { echo "ensure-docker: $*" >&2; }
die() { say "$*"; exit 1; }

sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "must run as root (or with sudo available)"
    sudo="sudo"
fi

answers() { # $1: client binary; talks to our socket unless DOCKER_HOST says otherwise
    if [ -n "${DOCKER_HOST:-}" ]; then
        "$1" info >/dev/null 2>&1
    else
        "$1" -H "unix://$socket" info >/dev/null 2>&1
    fi
}

client_ok() {
    # The client used by the other scripts must work with the daemon that answers.
    if ! answers "$docker_cli" && [ -x /usr/bin/docker ] && answers /usr/bin/docker; then
        say "'$docker_cli' does not work with this daemon but /usr/bin/docker does: export DOCKER=/usr/bin/docker"
    fi
}

# 1. Already answering (ours from an earlier run, another engineer's, or a system service): done.
if command -v "$docker_cli" >/dev/null 2>&1 && answers "$docker_cli"; then
    client_ok
    exit 0
fi
if [ -x /usr/bin/docker ] && answers /usr/bin/docker; then
    client_ok
    exit 0
fi

# 2. Install what is missing (quietly; the apt lock may be held by someone else for a while).
missing=""
[ -x /usr/sbin/dockerd ] || missing="$missing docker.io"
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
if [ -n "$missing" ]; then
    apt_log=$(mktemp)
    # shellcheck disable=SC2086  # $missing is a word list
    if ! { $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq &&
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
            --no-install-recommends $missing; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        die "apt-get install$missing failed"
    fi
    rm -f "$apt_log"
fi
dockerd=/usr/sbin/dockerd
[ -x "$dockerd" ] || die "$dockerd missing after installing docker.io"

# 3. Start it, serialised so two concurrent callers do not start two daemons.
mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
lock=/tmp/sm-r-magic-ensure-docker.lock
exec 9>"$lock"
if command -v flock >/dev/null 2>&1; then
    flock -w 300 9 || die "timed out waiting for $lock"
fi

# Someone may have started one while we waited for the lock, or a daemon may still be starting up.
wait_answer() { # $1: seconds, $2: pid to watch (optional)
    n=0
    while [ "$n" -lt $(($1 * 4)) ]; do
        if answers /usr/bin/docker 2>/dev/null || answers "$docker_cli"; then return 0; fi
        if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
        sleep 0.25
        n=$((n + 1))
    done
    return 1
}
if [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    if wait_answer "$timeout" "$(cat /var/run/docker.pid)"; then client_ok; exit 0; fi
    die "a dockerd (pid $(cat /var/run/docker.pid)) runs but does not answer on $socket; see its log"
fi
rm -f "$pidfile"

try_start() { # $@: dockerd flags; on success writes the pid file
    : >"$logfile"
    # setsid: the daemon gets its own session, so the caller's job control / Ctrl-C does not reach it.
    # shellcheck disable=SC2086  # $extra_flags is a flag list
    $sudo setsid "$dockerd" -H "unix://$socket" --pidfile /var/run/docker.pid "$@" $extra_flags \
        </dev/null >>"$logfile" 2>&1 9>&- &
    started=$!
    if wait_answer "$timeout" "$started"; then
        pid=$(cat /var/run/docker.pid 2>/dev/null || echo "$started")
        echo "$pid" >"$pidfile"
        return 0
    fi
    # Did not come up: make sure it is gone before the next attempt.
    if kill -0 "$started" 2>/dev/null; then
        $sudo kill "$started" 2>/dev/null || true
        n=0
        while kill -0 "$started" 2>/dev/null && [ "$n" -lt 60 ]; do sleep 0.25; n=$((n + 1)); done
        kill -0 "$started" 2>/dev/null && $sudo kill -9 "$started" 2>/dev/null || true
    fi
    return 1
}

for flags in \
    "--storage-driver=overlay2" \
    "--storage-driver=overlay2 --iptables=false --bridge=none" \
    "--storage-driver=vfs" \
    "--storage-driver=vfs --iptables=false --bridge=none"; do
    # shellcheck disable=SC2086  # $flags is a flag list
    if try_start $flags; then
        case $flags in *vfs*) say "overlay2 refused; running with the slow vfs storage driver" ;; esac
        case $flags in *iptables=false*) say "no iptables: containers need --network host" ;; esac
        say "started dockerd (pid $(cat "$pidfile"), flags: $flags, log: $logfile)"
        client_ok
        exit 0
    fi
    cp "$logfile" "$logfile.failed" 2>/dev/null || true
done
tail -n 20 "$logfile.failed" >&2 2>/dev/null || true
die "could not start dockerd (last log: $logfile.failed)"
