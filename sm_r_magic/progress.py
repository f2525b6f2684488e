"""Progress of jobs: widgets in a notebook (widgets.py), compact text lines elsewhere (terminal IPython,
plain Python, CI logs). Waiting can be interrupted with Ctrl-C: that detaches, the job keeps running."""

import sys
import time

from .jobs import TERMINAL


def _configured():
    from .config import current

    return current().progress


def _widgets_wanted(progress):
    if progress == "widget":
        return True
    if progress != "auto":
        return False
    from .widgets_support import has_widget_frontend

    return has_widget_frontend()


class TextProgress:
    """Status changes and log lines as they arrive, as plain text."""

    def __init__(self, job, out=None):
        self.job = job
        self.out = out or sys.stdout
        self._last = None

    def write(self, text):
        self.out.write(text + "\n")
        self.out.flush()

    def start(self):
        what = self.job.kind if self.job.kind == "endpoint" else f"{self.job.kind} job"
        self.write(f"[sm-r-magic] {what} {self.job.name} on {self.job.backend_name}")

    def update(self):
        for line in self.job.poll_logs():
            self.write(line)
        state = (self.job.status, self.job.secondary_status)
        if state != self._last and state[0] not in TERMINAL:
            self.write(f"[sm-r-magic] {state[1]} ({self.job.elapsed:.1f}s)")
        self._last = state

    def finish(self):
        self.update()
        self.write(f"[sm-r-magic] {self.job.summary()}")
        if self.job.status not in ("Completed", "InService") and self.job.failure_reason:
            self.write(self.job.failure_reason)

    def detached(self):
        self.write(f"[sm-r-magic] detached from {self.job.name}; it keeps running. Re-attach with "
                   f"%r_attach {self.job.name} (or sm_r_magic.attach({self.job.name!r})), stop it with .stop()")


def make_view(job, progress):
    if progress == "none":
        return None
    if _widgets_wanted(progress):
        try:
            from .widgets import JobWidget, endpoint_widget

            if getattr(job, "kind", None) == "endpoint":
                return endpoint_widget(job)
            return JobWidget.for_job(job)
        except ImportError:
            pass
    return TextProgress(job)


def watch(job, progress="auto", timeout=None):
    """Block until the job ends (or Ctrl-C / timeout), driving a progress view."""
    view = make_view(job, progress)
    if view is not None:
        view.start()
    started = time.monotonic()
    try:
        waited = 0
        while not job.done:
            if view is not None:
                view.update()
            if timeout is not None and time.monotonic() - started > timeout:
                return job
            time.sleep(job.refresh_interval(waited))
            waited += 1
        if view is not None:
            view.finish()
        else:
            job.poll_logs()
    except KeyboardInterrupt:
        if view is not None:
            view.detached()
        else:
            sys.stdout.write(f"detached from {job.name}; it keeps running\n")
    return job


def display_endpoint(predictor):
    view = None
    if _widgets_wanted(_configured()):
        try:
            from .widgets import endpoint_widget

            view = endpoint_widget(predictor)
        except ImportError:
            view = None
    if view is None:
        print(predictor.summary())
        return
    view.start()
    if predictor.done:
        view.finish()
    else:
        view.follow()  # the kernel's poller thread shows Creating -> InService


def display_job(job):
    """How a handle shows itself as a cell's result."""
    view = make_view(job, "text" if _configured() == "none" else _configured())
    if isinstance(view, TextProgress) or view is None:
        print(job.summary())
        return
    view.start()
    if job.done:
        view.finish()
    else:
        view.follow()  # nobody waits in the foreground: the kernel's poller thread keeps it current


def show_async(job, progress="auto"):
    """A job submitted without waiting (--async, wait=False): in a notebook, show its widget now and let
    the kernel's poller thread keep it current while other cells run. Text path: prints nothing (the
    returned handle shows its one-line summary)."""
    if progress in (None, "none", "text") or not _widgets_wanted(progress):
        return None
    try:
        from .widgets import JobWidget
    except ImportError:
        return None
    view = JobWidget.for_job(job)
    view.start()
    if job.done:
        view.finish()
    else:
        view.follow()
    return view


def show_jobs(jobs):
    """%r_jobs: a table (the widget dashboard when a frontend exists)."""
    if _widgets_wanted(_configured()):
        try:
            from .jobs import SESSION
            from .widgets import JobsDashboard

            return JobsDashboard(jobs, SESSION.endpoints)
        except ImportError:
            pass
    if not jobs:
        print("no jobs yet")
        return None
    rows = [(j.name, j.kind, j.backend_name, j.status, f"{j.elapsed:.1f}s") for j in jobs]
    widths = [max(len(str(r[i])) for r in rows + [("name", "kind", "backend", "status", "elapsed")]) for i in range(5)]
    for row in [("name", "kind", "backend", "status", "elapsed")] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    return None
