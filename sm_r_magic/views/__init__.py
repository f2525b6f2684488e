"""How handles are shown: widgets in a notebook with a widget frontend, text lines elsewhere (terminal IPython,
plain Python, the R package, CI logs). The magics and the API choose the view; handles know nothing of this
package. Widget modules (job, endpoint, dashboard, form) import ipywidgets and are imported only when a widget
frontend exists; this module and text.py import neither ipywidgets nor IPython.

Every view follows one protocol, so `watch()` can drive any of them in the foreground:
    start()     show it (once per cell)
    update()    read the handle (describe, new log lines) and redraw
    tick()      redraw from what was last read (the clock advances; no backend call)
    finish()    the handle settled: final redraw
    detached()  Ctrl-C while waiting: the handle keeps running (widgets keep updating in the background)
and `reason_shown` says whether the reader has seen the failure reason (so a raised JobFailed need not repeat it).
"""

import sys
import time

from ..handle import Handle
from .text import TextView, older_note, print_jobs_table, print_summary_once, summary_printed  # noqa: F401

TICK_SECONDS = 1.0  # a waiting view's clock advances this often, whatever the backend's polling pace
RECENT_JOBS = 20  # %r_jobs lists this many of the most recent jobs (like the sagemaker backend's LIST_LIMIT)


def _configured_progress():
    from ..config import current

    return current().progress


def widgets_wanted(progress):
    if progress == "widget":
        return True
    if progress != "auto":
        return False
    from .frontend import has_widget_frontend

    return has_widget_frontend()


def widget_view(handle):
    """The handle's widget (one per handle, shown in as many cells as it is displayed in); None without
    ipywidgets."""
    try:
        if handle.kind == "endpoint":
            from .endpoint import EndpointView as view_class
        elif handle.kind == "pipeline":
            from .pipeline import PipelineView as view_class  # absent: the text view
        else:
            from .job import JobView as view_class
    except ImportError:
        return None
    return view_class.for_handle(handle)


def make_view(handle, progress):
    if progress in (None, "none"):
        return None
    if widgets_wanted(progress):
        view = widget_view(handle)
        if view is not None:
            return view
    return TextView(handle)


class Clock:
    """Time as the waiting loop sees it (tests pass a controlled one)."""

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)


def _sleep_ticking(view, seconds, clock):
    """Sleep out the backend's polling interval; the view's clock still ticks every TICK_SECONDS (a redraw
    from the last reading: no backend call)."""
    deadline = clock.monotonic() + seconds
    while True:
        left = deadline - clock.monotonic()
        if left <= 0:
            return
        clock.sleep(min(left, TICK_SECONDS) if view is not None else left)
        if view is not None and clock.monotonic() < deadline:
            view.tick()


def watch(handle, progress=None, timeout=None, clock=Clock):
    """Block until the handle settles (or Ctrl-C, or timeout), showing progress (None: as RMagic.progress says);
    returns the handle."""
    return watch_with(make_view(handle, progress or _configured_progress()), handle, timeout, clock)


def watch_with(view, handle, timeout=None, clock=Clock):
    """watch() with a view the caller made (and can ask afterwards, e.g. whether it showed the failure)."""
    if view is not None:
        view.start()
    started = clock.monotonic()
    try:
        waited = 0
        while not handle.done:
            if view is not None:
                view.update()
            if timeout is not None and clock.monotonic() - started > timeout:
                return handle
            _sleep_ticking(view, handle.refresh_interval(waited), clock)
            waited += 1
        if view is not None:
            view.finish()
        else:
            handle.poll_logs()
    except KeyboardInterrupt:
        if view is not None:
            view.detached()
        else:
            sys.stdout.write(f"detached from {handle.name}; it keeps running\n")
    return handle


def show_async(handle, progress="auto"):
    """A handle that nobody waits for (--async, wait=False): in a notebook, its widget now, kept current by the
    kernel's poller thread while other cells run. Text: nothing (the returned handle shows its summary)."""
    if progress in (None, "none", "text") or not widgets_wanted(progress):
        return None
    view = widget_view(handle)
    if view is None:
        return None
    view.start()
    view.settle_or_follow()
    return view


def display_handle(handle):
    """A handle as a cell's result (registered with IPython's display formatter by the extension)."""
    progress = _configured_progress()
    view = make_view(handle, "text" if progress == "none" else progress)
    if view is None or isinstance(view, TextView):
        print_summary_once(handle)
        return
    view.start()
    view.settle_or_follow()


def show_jobs(jobs, endpoints=(), limit=None):
    """%r_jobs: the most recent `limit` jobs and pipeline executions (None: all; `jobs` oldest first) and the
    endpoints, as a table (the widget dashboard when a frontend exists)."""
    jobs, endpoints = list(jobs), list(endpoints or ())
    older = max(0, len(jobs) - limit) if limit is not None else 0
    jobs = jobs[older:]
    if widgets_wanted(_configured_progress()):
        try:
            from .dashboard import JobsDashboard

            return JobsDashboard(jobs, endpoints, older=older)
        except ImportError:
            pass
    print_jobs_table(jobs, endpoints, older)
    return None


def launch_form(kind, kwargs, submit):
    """The magics' --form: the options as a form whose every Launch submits the cell with the form's values."""
    from .form import LaunchForm

    return LaunchForm(kind, kwargs, submit)


def register_display(ipython):
    """Show handles through their views when they are a cell's result (the extension calls this once)."""
    from ..jobs import Job
    from ..workflow.execution import PipelineExecution
    from ..predictor import Predictor

    formatter = ipython.display_formatter.ipython_display_formatter
    for handle_type in (Job, Predictor, PipelineExecution):
        formatter.for_type(handle_type, display_handle)


# `handle.wait()` typed by a user shows progress the way the magics do.
Handle.watcher = staticmethod(watch)

__all__ = ["watch", "watch_with", "show_async", "display_handle", "show_jobs", "launch_form", "register_display",
           "make_view", "TextView", "older_note", "RECENT_JOBS", "TICK_SECONDS"]
