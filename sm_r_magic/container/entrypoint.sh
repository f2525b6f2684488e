#!/bin/sh
# Entrypoint of the shared R container: `train`, `process` or `serve`.
# train/process exec R so that R itself receives SageMaker's SIGTERM (the seed's run.sh did not); serve execs
# the HTTP front (serve_front.py, Python stdlib), which runs R and its workers and ends them on SIGTERM.
#
# As PID 1 (docker run, SageMaker) the kernel drops every signal the process has no handler for, and R
# installs none for SIGTERM: `docker stop` / StopTrainingJob would wait the whole grace period and then
# SIGKILL. So when this script is PID 1 it first re-execs itself under tini (in the image), which stays
# PID 1, reaps zombies and forwards SIGTERM to R, whose default action then ends the job at once.
set -e
if [ "$$" = 1 ] && [ -z "${SM_R_MAGIC_NO_INIT:-}" ] && command -v tini >/dev/null 2>&1; then
    exec tini -g -- "$0" "$@"
fi
here=$(dirname "$(readlink -f "$0")")
mode=${1:-train}
[ $# -gt 0 ] && shift
if [ "$mode" = serve ]; then
    # The front needs only the standard library: -S -E (no site-packages, no PYTHON* variables: a faster
    # start) and -B (no __pycache__ beside the code)
    exec "${SM_R_MAGIC_PYTHON:-python3}" -S -E -B "$here/serve_front.py" "$@"
fi
exec "${SM_R_MAGIC_RSCRIPT:-Rscript}" --no-init-file "$here/entrypoint.R" "$mode" "$@"
