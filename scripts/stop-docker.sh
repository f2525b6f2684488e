#!/bin/sh
# Stop the dockerd that scripts/ensure-docker.sh started, and only that one: by the PID in
# $DOCKERD_PIDFILE (default <repo>/.cache/dockerd.pid). Does nothing when the pid file is absent
# (the daemon was already running, or belongs to someone else). SIGTERM, wait up to
# $DOCKERD_STOP_TIMEOUT seconds (default 30; dockerd stops its containers first), then SIGKILL.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
pidfile=${DOCKERD_PIDFILE:-$repo/.cache/dockerd.pid}
stop_timeout=${DOCKERD_STOP_TIMEOUT:-30}

[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
case $pid in '' | *[!0-9]*) echo "stop-docker: bad pid file $pidfile" >&2; rm -f "$pidfile"; exit 1 ;; esac

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

# Only signal it if that PID is still a dockerd (the PID may have been reused after a crash).
if kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
    $sudo kill -TERM "$pid"
    n=0
    while kill -0 "$pid" 2>/dev/null && [ "$n" -lt $((stop_timeout * 4)) ]; do
        sleep 0.25
        n=$((n + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "stop-docker: dockerd $pid ignored SIGTERM for ${stop_timeout}s; killing it" >&2
        $sudo kill -KILL "$pid" 2>/dev/null || true
    fi
fi
rm -f "$pidfile"
