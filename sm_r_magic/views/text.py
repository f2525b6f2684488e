"""Text views: what a terminal, plain Python, the R package and CI logs see. Status changes and log lines as
they arrive, one summary at the end, the R error when the log did not already show it."""

import sys

from ..contract import KIND_LABEL
from ..workflow.execution import step_order
from .frontend import request_id

STEP_ENDED = ("Succeeded", "Failed", "Stopped")

# (backend, kind, name) -> the request (cell) whose text view printed the handle's summary, so that the handle
# shown as the cell's result does not print it a second time
SUMMARY_PRINTED = {}


def handle_key(handle):
    return (handle.backend_name, handle.kind, handle.name)


def reason_in_log(reason, lines):
    """Does the log already show the failure reason (every line of it)? Local and docker jobs print the R
    error and traceback; on sagemaker the log may lack it (or the reason is SageMaker's own words)."""
    text = "\n".join(lines)
    wanted = [line.strip() for line in (reason or "").splitlines() if line.strip()]
    return bool(wanted) and all(line in text for line in wanted)


def step_line(step):
    """[sm-r-magic] fit: Succeeded (2.3s) · ... (cached) · condition: Succeeded (True: the if branch runs)."""
    status = step.get("StepStatus")
    detail = ""
    outcome = ((step.get("Metadata") or {}).get("Condition") or {}).get("Outcome")
    if step.get("CacheHitResult"):
        detail = " (cached)"
    elif outcome is not None:
        detail = f" ({outcome}: the {'if' if outcome == 'True' else 'else'} branch runs)"
    elif status in STEP_ENDED and step.get("StartTime") and step.get("EndTime"):
        detail = f" ({(step['EndTime'] - step['StartTime']).total_seconds():.1f}s)"
    return f"[sm-r-magic] {step['StepName']}: {status}{detail}"


class TextView:
    """Progress of one handle as plain text lines."""

    def __init__(self, handle, out=None):
        self.handle = handle
        self.out = out or sys.stdout
        self._last = None
        self._steps = {}  # a pipeline's step name -> (StepStatus, cached) as last printed
        self.reason_shown = False  # the failure reason reached the reader (in the log or after it)

    def write(self, text):
        self.out.write(text + "\n")
        self.out.flush()

    def start(self):
        of = f" of {self.handle.pipeline_name}" if self.handle.kind == "pipeline" else ""
        self.write(f"[sm-r-magic] {KIND_LABEL.get(self.handle.kind, self.handle.kind)} {self.handle.name}{of} "
                   f"on {self.handle.backend_name}")

    def update(self):
        if self.handle.kind == "pipeline":
            self._update_steps()
            return
        for line in self.handle.poll_logs():
            self.write(line)
        snap = self.handle.snapshot(fetch="if-stale")
        state = (snap.status, snap.secondary_status)
        if state != self._last and not snap.terminal:
            self.write(f"[sm-r-magic] {snap.secondary_status} ({snap.elapsed():.1f}s)")
        self._last = state

    def _update_steps(self):
        """A pipeline execution: each step's status change as a line, its jobs' log lines (labelled with the
        step) between a step's start and its end."""
        snap = self.handle.snapshot(fetch="if-stale")
        changed = []
        for step in snap.steps:
            state = (step.get("StepStatus"), bool(step.get("CacheHitResult")))
            if self._steps.get(step["StepName"]) != state:
                self._steps[step["StepName"]] = state
                changed.append(step)
        ended = [s for s in changed if s.get("StepStatus") in STEP_ENDED]
        for step in changed:
            if step not in ended:
                self.write(step_line(step))
        for line in self.handle.poll_logs():
            self.write(line)
        for step in ended:
            self.write(step_line(step))

    def tick(self):
        """Text has no clock to advance between polls."""

    def finish(self):
        self.update()
        if self.handle.kind == "pipeline":
            self._finish_pipeline()
            return
        self.write(f"[sm-r-magic] {self.handle.summary()}")
        SUMMARY_PRINTED[handle_key(self.handle)] = request_id()
        snap = self.handle.snapshot(fetch="if-stale")
        if snap.status not in ("Completed", "InService") and snap.failure_reason:
            if not reason_in_log(snap.failure_reason, snap.log_lines):
                self.write(snap.failure_reason)
            self.reason_shown = True

    def _finish_pipeline(self):
        """The execution's line, then the failed step's R error unless its job's log above showed it (the
        execution's own FailureReason repeats that error: it is not printed as well)."""
        snap = self.handle.snapshot(fetch="if-stale")
        succeeded = sum(1 for s in snap.steps if s.get("StepStatus") == "Succeeded")
        line = (f"[sm-r-magic] pipeline execution {self.handle.name} of {self.handle.pipeline_name} "
                f"({snap.backend}): {snap.status} · {succeeded}/{len(step_order(self.handle.definition))} steps "
                f"succeeded · {snap.elapsed():.1f}s")
        failed = next((s for s in snap.steps if s.get("StepStatus") == "Failed"), None)
        reason = ((failed or {}).get("FailureReason") or snap.failure_reason) if snap.status == "Failed" else None
        if reason and failed and reason_in_log(reason, snap.log_lines):
            line += f" · step {failed['StepName']} failed: its R error is above"
            reason = None
        elif reason:
            line += f" · {'step ' + failed['StepName'] if failed else 'the execution'} failed:"
        self.write(line)
        SUMMARY_PRINTED[handle_key(self.handle)] = request_id()
        if reason:
            self.write(reason)
        self.reason_shown = snap.status == "Failed"

    def detached(self):
        name = self.handle.name
        self.write(f"[sm-r-magic] detached from {name}; it keeps running. Re-attach with %r_attach {name} "
                   f"(or sm_r_magic.attach({name!r})), stop it with .stop()")


def summary_printed(handle):
    """Did this cell's text view print the handle's summary? Then displaying it adds nothing (and a terminal would
    show an empty Out[N]:), so the magic returns None instead."""
    key = handle_key(handle)
    return key in SUMMARY_PRINTED and SUMMARY_PRINTED[key] == request_id()


def print_summary_once(handle):
    """The handle as a cell's result in text mode: its summary, unless this cell's text view printed it."""
    shown_in = SUMMARY_PRINTED.pop(handle_key(handle), None)
    if shown_in is None or shown_in != request_id():
        print(handle.summary())


def older_note(count):
    return f"{count} older job{'s' if count != 1 else ''} not shown (--all lists every job)"


def print_jobs_table(jobs, endpoints, older):
    if not jobs and not endpoints:
        print("no jobs yet")
        return
    head = ("name", "kind", "backend", "status", "elapsed")
    rows = [(j.name, j.kind if j.kind != "pipeline" else f"pipeline {j.pipeline_name}", j.backend_name, j.status,
             f"{j.elapsed:.1f}s") for j in jobs]
    rows += [(p.endpoint_name, "endpoint", p.backend_name, p.status, f"{p.elapsed:.1f}s") for p in endpoints]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    for row in [head] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    if older:
        print(older_note(older))
