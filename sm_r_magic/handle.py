"""What every handle shares (Job, Predictor, and the handles to come: pipeline executions, tuning and transform
jobs): a cached description from its backend, its log lines, a one-line summary, polling until it settles, and
`snapshot()`, the immutable picture that views render. Handles know no UI: they import nothing from the views,
IPython or ipywidgets, so they work the same in a kernel, in plain Python, through reticulate and in the CLI."""

import datetime
import re
import threading
import time
from dataclasses import dataclass, field


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def last_metric_values(text, regexes):
    """The last match of each metric regex (its group 1) in `text`, as a float where it is a number."""
    values = {}
    for name, regex in regexes.items():
        found = re.findall(regex, text)
        if found:
            last = found[-1][0] if isinstance(found[-1], tuple) else found[-1]
            try:
                values[name] = float(last)
            except ValueError:
                values[name] = last
    return values


@dataclass(frozen=True)
class Snapshot:
    """A handle as of one description and one read of its logs. Views render only this, so a view can redraw
    (its clock ticking) as often as it likes without calling the backend."""

    kind: str                      # "training", "processing", "endpoint", ...
    name: str
    backend: str
    status: str
    secondary_status: str
    terminal: bool                 # the status will not change any more
    created: datetime.datetime = None
    ended: datetime.datetime = None
    transitions: tuple = ()        # ({"Status", "StartTime", "EndTime", "StatusMessage"}, ...)
    failure_reason: str = None
    outputs: dict = field(default_factory=dict)
    model_data: str = None
    billable_seconds: int = None
    local_folder: str = None
    url: str = None
    log_lines: tuple = ()
    metric_regexes: dict = field(default_factory=dict)
    # pipeline executions: each step as ListPipelineExecutionSteps describes it (StepName, StepStatus, StartTime,
    # EndTime, FailureReason, CacheHitResult, Metadata), in the definition's order, and the graph's edges as
    # (from step, to step, label) with label "" for data, "if"/"else" for a condition's branches
    steps: tuple = ()
    edges: tuple = ()

    def elapsed(self, now=None):
        """Seconds since creation, until the end once the handle has settled; 0 before it exists."""
        if not self.created:
            return 0.0
        end = self.ended if self.terminal and self.ended else (now or utc_now())
        return max(0.0, (end - self.created).total_seconds())

    def metrics(self):
        """The last value of each metric regex (its group 1) in the log lines, as a float where it is one."""
        return last_metric_values("\n".join(self.log_lines), self.metric_regexes) if self.metric_regexes else {}


class Handle:
    """Base of every handle: subclasses say how to describe themselves and read their logs."""

    kind = "handle"
    terminal_statuses = ()
    max_age = 0.2  # properties read a description at most this old: one view refresh makes one describe call

    def __init__(self, backend, name, created=None):
        self.backend = backend
        self.name = name
        self._created = created  # epoch seconds, when a listing already told (saves a describe)
        self._description = None
        self._described_at = 0.0
        self._log_cursor = None
        self._log_lines = []
        self._log_lock = threading.Lock()

    # -- what a subclass provides ---------------------------------------------------------------------------
    def _fetch_description(self):
        raise NotImplementedError

    def _read_logs(self, cursor):
        """New log lines since `cursor` -> (lines, cursor)."""
        raise NotImplementedError

    def _status_of(self, description):
        raise NotImplementedError

    def snapshot(self, fetch=True):
        """The handle as of now. fetch=True: describe it and read new log lines first; "if-stale": describe it
        only if the last description is older than max_age (no log read); False: the last description."""
        raise NotImplementedError

    # -- description -----------------------------------------------------------------------------------------
    def describe(self, refresh=True):
        if refresh or self._description is None:
            settled = self._description is not None and self._status_of(self._description) in self.terminal_statuses
            if not settled:  # a settled handle does not change
                self._description = self._fetch_description()
                self._described_at = time.monotonic()
        return self._description

    def _description_for(self, fetch):
        if fetch == "if-stale":
            return self._cached()
        return self.describe(refresh=bool(fetch) or self._description is None)

    def _cached(self):
        # never older than the backend's fastest polling pace (local: 10 ms), so that polling sees the end
        max_age = min(self.max_age, getattr(self.backend, "poll_interval", (self.max_age,))[0])
        stale = self._description is None or time.monotonic() - self._described_at > max_age
        return self.describe(refresh=stale)

    def forget(self):
        """Drop the cached description (the next read asks the backend)."""
        self._description = None

    @property
    def backend_name(self):
        return self.backend.name

    @property
    def status(self):
        return self._status_of(self._cached())

    @property
    def done(self):
        return self.status in self.terminal_statuses

    @property
    def failure_reason(self):
        return self._cached().get("FailureReason")

    @property
    def created(self):
        """Creation time in epoch seconds (orders jobs, endpoints and executions of any backend together)."""
        if self._created is None:
            when = self._cached().get("CreationTime")
            self._created = when.timestamp() if hasattr(when, "timestamp") else float(when or 0)
        return self._created

    @property
    def elapsed(self):
        """Seconds since creation (until the end once it has settled)."""
        return self.snapshot(fetch="if-stale").elapsed()

    @property
    def local_folder(self):
        """Where a local or docker backend keeps it (its job, endpoint or execution folder), else None."""
        return self.snapshot(fetch="if-stale").local_folder

    # -- logs ----------------------------------------------------------------------------------------------
    def poll_logs(self):
        """New log lines since the last call (also kept for logs())."""
        with self._log_lock:
            lines, self._log_cursor = self._read_logs(self._log_cursor)
            self._log_lines.extend(lines)
            return lines

    def logs(self):
        """Everything printed so far."""
        self.poll_logs()
        return "\n".join(self._log_lines) + ("\n" if self._log_lines else "")

    @property
    def log_lines(self):
        """The lines read so far (without asking the backend)."""
        with self._log_lock:
            return tuple(self._log_lines)

    # -- waiting -------------------------------------------------------------------------------------------
    def refresh_interval(self, waited):
        """Seconds before the `waited`-th poll: the backend's pace, backing off."""
        low, high = getattr(self.backend, "poll_interval", (0.5, 5.0))
        young = getattr(self.backend, "young_polls", 0)  # polls at the fastest pace before backing off
        return min(high, low * (1.5 ** max(0, waited - young)))

    # The views package sets this to its watch(handle, progress, timeout) when it is imported, so that
    # `handle.wait()` typed in a notebook shows progress; the handle itself only polls.
    watcher = None

    def wait(self, progress=None, timeout=None):
        """Wait until the handle settles (or `timeout` seconds pass); returns the handle. progress "auto",
        "widget" or "text" shows progress through the views package (None: as RMagic.progress says); "none" only
        polls. Ctrl-C while waiting detaches (the job keeps running)."""
        if progress != "none" and Handle.watcher is not None:
            return Handle.watcher(self, progress=progress, timeout=timeout)
        return self.poll_until_settled(timeout)

    def poll_until_settled(self, timeout=None):
        started = time.monotonic()
        waited = 0
        while not self.done:
            if timeout is not None and time.monotonic() - started > timeout:
                break
            time.sleep(self.refresh_interval(waited))
            waited += 1
        return self

    # -- showing -------------------------------------------------------------------------------------------
    def summary(self):
        raise NotImplementedError

    def __str__(self):
        return self.name  # so that {job} in a magic line expands to the name

    def __repr__(self):
        return f"<{type(self).__name__} {self.summary()}>"

    def _repr_pretty_(self, printer, cycle):
        printer.text(self.summary())
