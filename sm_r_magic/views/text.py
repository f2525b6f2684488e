"""Text views: what a terminal, plain Python, the R package and CI logs see. Status changes and log lines as
they arrive, one summary at the end, the R error when the log did not already show it."""

import sys

from ..contract import KIND_LABEL
from .frontend import request_id

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


class TextView:
    """Progress of one handle as plain text lines."""

    def __init__(self, handle, out=None):
        self.handle = handle
        self.out = out or sys.stdout
        self._last = None
        self.reason_shown = False  # the failure reason reached the reader (in the log or after it)

    def write(self, text):
        self.out.write(text + "\n")
        self.out.flush()

    def start(self):
        self.write(f"[sm-r-magic] {KIND_LABEL.get(self.handle.kind, self.handle.kind)} {self.handle.name} "
                   f"on {self.handle.backend_name}")

    def update(self):
        for line in self.handle.poll_logs():
            self.write(line)
        snap = self.handle.snapshot(fetch="if-stale")
        state = (snap.status, snap.secondary_status)
        if state != self._last and not snap.terminal:
            self.write(f"[sm-r-magic] {snap.secondary_status} ({snap.elapsed():.1f}s)")
        self._last = state

    def tick(self):
        """Text has no clock to advance between polls."""

    def finish(self):
        self.update()
        self.write(f"[sm-r-magic] {self.handle.summary()}")
        SUMMARY_PRINTED[handle_key(self.handle)] = request_id()
        snap = self.handle.snapshot(fetch="if-stale")
        if snap.status not in ("Completed", "InService") and snap.failure_reason:
            if not reason_in_log(snap.failure_reason, snap.log_lines):
                self.write(snap.failure_reason)
            self.reason_shown = True

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
