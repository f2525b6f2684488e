#!/bin/sh
# Entrypoint of the shared R container: `train`, `process` or `serve`.
# It execs R so that R itself receives SageMaker's SIGTERM (the seed's run.sh did not).
set -e
here=$(dirname "$(readlink -f "$0")")
mode=${1:-train}
[ $# -gt 0 ] && shift
exec "${SM_R_MAGIC_RSCRIPT:-Rscript}" --no-init-file "$here/entrypoint.R" "$mode" "$@"
