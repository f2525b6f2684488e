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
    # -B: no __pycache__ next to the code; -E -s: no PYTHON* variables or user site-packages (stdlib only)
    exec "${SM_R_MAGIC_PYTHON:-python3}" -B -E -s "$here/serve_front.py" "$@"
fi
exec "${SM_R_MAGIC_RSCRIPT:-Rscript}" --no-init-file "$here/entrypoint.R" "$mode" "$@"
