#!/bin/sh
# Build the shared R image (sm_r_magic/container/Dockerfile) with the legacy builder.
#
#   scripts/build-image.sh [extra docker build args...]
#
# Environment:
#   IMAGE              tag to build (default sm-r-magic:latest)
#   BASE_IMAGE         Debian bookworm base. When unset: debian:bookworm-slim if it is present or can be
#                      pulled within PULL_TIMEOUT seconds (default 20), else the registry-free base
#                      that scripts/build-base-image.sh makes (sm-r-magic-base:bookworm).
#   EXTRA_APT_PACKAGES, EXTRA_R_PACKAGES, CRAN_PACKAGES, R_REPOS
#                      passed on as --build-arg when set (see the Dockerfile)
#   VERBOSE=1          stream the build output (default: write it to <repo>/.cache/build-image.log and
#                      show its tail only on failure)
#   DOCKER             docker client (default docker)
# Needs a running daemon (scripts/ensure-docker.sh). Prints the build time and the image size.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
image=${IMAGE:-sm-r-magic:latest}
context=$repo/sm_r_magic/container
docker_cli=${DOCKER:-docker}
pull_timeout=${PULL_TIMEOUT:-20}
log=$repo/.cache/build-image.log
mkdir -p "$repo/.cache"

say() { echo "build-image: $*" >&2; }

"$docker_cli" info >/dev/null 2>&1 || { say "no docker daemon answers (run scripts/ensure-docker.sh)"; exit 1; }

if [ -n "${BASE_IMAGE:-}" ]; then
    base=$BASE_IMAGE
    if ! "$docker_cli" image inspect "$base" >/dev/null 2>&1 &&
        ! timeout "$pull_timeout" "$docker_cli" pull -q "$base" >/dev/null 2>&1; then
        case $base in
            sm-r-magic-base:*) "$repo/scripts/build-base-image.sh" ;;
            *) say "base image $base is neither present nor pullable"; exit 1 ;;
        esac
    fi
elif "$docker_cli" image inspect debian:bookworm-slim >/dev/null 2>&1; then
    base=debian:bookworm-slim
elif timeout "$pull_timeout" "$docker_cli" pull -q debian:bookworm-slim >/dev/null 2>&1; then
    base=debian:bookworm-slim
else
    say "no registry reachable: using the debootstrap base image"
    base=sm-r-magic-base:bookworm
    BASE_IMAGE=$base "$repo/scripts/build-base-image.sh" >&2
fi

set -- --build-arg "BASE_IMAGE=$base" "$@"
for arg in EXTRA_APT_PACKAGES EXTRA_R_PACKAGES CRAN_PACKAGES R_REPOS; do
    eval "val=\${$arg:-}"
    # shellcheck disable=SC2154  # val is set by the eval
    if [ -n "$val" ]; then set -- "$@" --build-arg "$arg=$val"; fi
done

start=$(date +%s.%N)
say "building $image from $base"
if [ "${VERBOSE:-0}" = 1 ]; then
    DOCKER_BUILDKIT=0 "$docker_cli" build --force-rm -t "$image" "$@" "$context"
elif ! DOCKER_BUILDKIT=0 "$docker_cli" build --force-rm -t "$image" "$@" "$context" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    say "build failed (full log: $log)"
    exit 1
fi
end=$(date +%s.%N)
size=$("$docker_cli" image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')
say "built $image in $(echo "$start $end" | awk '{printf "%.1f", $2 - $1}') s ($size)"
