"""Errors a user can fix: shown as one line (an IPython UsageError in the magics), never a traceback."""


class SmRMagicError(Exception):
    """Bad input or a missing setting: the message says what to do. Nothing was created."""


def _what(handle):
    return {"endpoint": "endpoint", "pipeline": "pipeline execution"}.get(handle.kind, f"{handle.kind} job")


class JobFailed(Exception):
    """A job (or endpoint, or pipeline execution: its failed step's R error) ended Failed; carries the handle so
    callers can read its logs."""

    def __init__(self, job, reason_shown=False):
        self.job = job
        self.reason_shown = reason_shown  # the progress view already showed the R error in this cell
        super().__init__(f"{_what(job)} {job.name} failed: {job.failure_reason}")


def _render_job_failed(self):
    """IPython shows this instead of a Python traceback: the R error is what the user needs, once. When the
    progress view already showed it, the rendered error only points at it; the exception's message (str, what
    nbclient and papermill report) still carries it."""
    job = self.job
    lines = [f"JobFailed: {_what(job)} {job.name} ({job.backend_name}) failed"]
    if job.failure_reason and not self.reason_shown:
        lines += ["", job.failure_reason]
    elif job.failure_reason:
        lines[0] += ": the R error is shown above"
    where = job.local_folder
    if job.kind == "pipeline":  # its steps' logs, each labelled with its step; the job folders are kept
        lines += ["", f"Full logs: .logs() of the execution (%r_attach {job.name})"]
    else:
        lines += ["", "Full logs: " + (f"{job.name}.logs()" if not where else f"{where}/logs.txt (job folder kept)")]
    return lines


JobFailed._render_traceback_ = _render_job_failed
