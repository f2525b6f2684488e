"""Progress of jobs: widgets in a notebook (widgets.py), compact text lines elsewhere (terminal IPython,
plain Python, CI logs). Waiting can be interrupted with Ctrl-C: that detaches, the job keeps running."""

import sys
import time

from .jobs import TERMINAL

TICK_SECONDS = 1.0  # a waiting view's clock advances this often, whatever the backend's polling pace
RECENT_JOBS = 20  # %r_jobs lists this many of the most recent jobs (like the sagemaker backend's LIST_LIMIT)
_SUMMARY_PRINTED = {}  # (backend, kind, name) -> the request (cell) whose text view printed the job's summary


def _configured():
    from .config import current

    return current().progress


def _key(job):
    return (job.backend_name, job.kind, job.name)


def reason_in_log(reason, lines):
    """Does the log already show the failure reason (every line of it)? Local and docker jobs print the R
    error and traceback; on sagemaker the log may lack it (or the reason is SageMaker's own words)."""
    text = "\n".join(lines)
    wanted = [line.strip() for line in (reason or "").splitlines() if line.strip()]
    return bool(wanted) and all(line in text for line in wanted)


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

    def tick(self):
        """Text has no clock to advance between polls."""

    def finish(self):
        self.update()
        self.write(f"[sm-r-magic] {self.job.summary()}")
        from .widgets_support import request_id

        _SUMMARY_PRINTED[_key(self.job)] = request_id()
        reason = self.job.failure_reason
        if self.job.status not in ("Completed", "InService") and reason:
            if not reason_in_log(reason, getattr(self.job, "_log_lines", None) or ()):
                self.write(reason)

    def detached(self):
        self.write(f"[sm-r-magic] detached from {self.job.name}; it keeps running. Re-attach with "
                   f"%r_attach {self.job.name} (or sm_r_magic.attach({self.job.name!r})), stop it with .stop()")


def _widget_view(job):
    """The job's widget, or the endpoint widget for a predictor; None without ipywidgets."""
    try:
        from .widgets import JobWidget, endpoint_widget
    except ImportError:
        return None
    if getattr(job, "kind", None) == "endpoint":
        return endpoint_widget(job)
    return JobWidget.for_job(job)


def make_view(job, progress):
    if progress == "none":
        return None
    if _widgets_wanted(progress):
        view = _widget_view(job)
        if view is not None:
            return view
    return TextProgress(job)


def _sleep(view, seconds):
    """Sleep out the backend's polling interval; the view's clock still ticks every TICK_SECONDS (a
    refresh from the cached description: no API call)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, TICK_SECONDS) if view is not None else left)
        if view is not None and time.monotonic() < deadline:
            view.tick()


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
            _sleep(view, job.refresh_interval(waited))
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


def summary_printed(handle):
    """Did this cell's text view print the handle's summary? Then displaying it adds nothing (and a terminal
    would show an empty Out[N]:), so the magic returns None instead."""
    from .widgets_support import request_id

    key = _key(handle)
    return key in _SUMMARY_PRINTED and _SUMMARY_PRINTED[key] == request_id()


def display_endpoint(predictor):
    view = None
    if _widgets_wanted(_configured()):
        try:
            from .widgets import endpoint_widget

            view = endpoint_widget(predictor)
        except ImportError:
            view = None
    if view is None:
        from .widgets_support import request_id

        shown_in = _SUMMARY_PRINTED.pop(_key(predictor), None)
        if shown_in is None or shown_in != request_id():  # not already printed by this cell's text view
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
        from .widgets_support import request_id

        shown_in = _SUMMARY_PRINTED.pop(_key(job), None)
        if shown_in is None or shown_in != request_id():  # not already printed by this cell's text view
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
    view = _widget_view(job)
    if view is None:
        return None
    view.start()
    if job.done:
        view.finish()
    else:
        view.follow()
    return view


def older_note(count):
    return f"{count} older job{'s' if count != 1 else ''} not shown (--all lists every job)"


def show_jobs(jobs, endpoints=(), limit=None):
    """%r_jobs: the most recent `limit` jobs (None: all; `jobs` oldest first) and the endpoints, as a table
    (the widget dashboard when a frontend exists)."""
    jobs, endpoints = list(jobs), list(endpoints or ())
    older = max(0, len(jobs) - limit) if limit is not None else 0
    jobs = jobs[older:]
    if _widgets_wanted(_configured()):
        try:
            from .widgets import JobsDashboard

            return JobsDashboard(jobs, endpoints, older=older)
        except ImportError:
            pass
    if not jobs and not endpoints:
        print("no jobs yet")
        return None
    head = ("name", "kind", "backend", "status", "elapsed")
    rows = [(j.name, j.kind, j.backend_name, j.status, f"{j.elapsed:.1f}s") for j in jobs]
    rows += [(p.endpoint_name, "endpoint", p.backend_name, p.status, f"{p.elapsed:.1f}s") for p in endpoints]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    for row in [head] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    if older:
        print(older_note(older))
    return None
