"""Runs one local pipeline execution to its end, detached from the kernel that started it.

`python -m sm_r_magic.backends.pipeline_runner EXECUTION_FOLDER` rebuilds the backend from the settings recorded in
state.json and runs the definition (pipeline_executor.py). Because it owns the execution, a kernel interrupt or
restart neither stops nor orphans it: describe it again from its folder. SIGTERM stops it (its running step
jobs are stopped, as StopPipelineExecution does)."""

import signal

# Until the executor handles it (and while this module's imports run), SIGTERM must not kill the runner
# half-way: stop() writes the stop-requested file first, which the executor checks.
signal.signal(signal.SIGTERM, signal.SIG_IGN)

import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from .folder_executions import ExecutionFolder  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    folder = ExecutionFolder(argv[0])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from . import get_backend
        from ..config import RMagic
        from .pipeline_executor import Executor

        state = folder.state()
        backend = get_backend(state["Backend"], RMagic(**state["Settings"]))
        executor = Executor(folder, backend)
        signal.signal(signal.SIGTERM, executor.request_stop)
        executor.run()
    except Exception as exc:  # the execution must not stay Executing: say why it ended
        traceback.print_exc()
        state = folder.state()
        state.update(PipelineExecutionStatus="Failed", EndTime=time.time(),
                     FailureReason=f"the pipeline runner failed: {type(exc).__name__}: {exc}")
        folder.write_state(state)


if __name__ == "__main__":
    main()
