"""Notebook UI (ipywidgets 8): job progress, endpoints, the %r_jobs dashboard and the launch form.

Only imported where a widget frontend exists (see widgets_support.has_widget_frontend); elsewhere
progress.py prints compact text lines. Every view follows the same protocol as progress.TextProgress
(start / update / finish / detached), so ``progress.watch()`` can drive it in the foreground; without a
blocking cell (``--async``, a displayed handle, the dashboard, the launch form) the single per-kernel
poller thread (poller.POLLER) refreshes it. All widget mutations run under poller.UI_LOCK and are batched
with ``hold_sync`` so one refresh sends at most one message per changed widget.

Styling uses JupyterLab CSS variables (with fallbacks for other frontends) so light and dark themes both
read well; only status badges carry colour.
"""

import contextlib
import copy
import datetime
import functools
import html
import json
import time

import ipywidgets as widgets
from IPython.display import display

from .jobs import STATUS_KEY, TERMINAL
from .poller import POLLER, UI_LOCK
from .progress import older_note, reason_in_log
from .widgets_support import request_id as _request_id

TAIL_LINES = 15
FAILURE_TAIL_LINES = 40
MAX_LOG_LINES = 20000  # the "all logs" view shows at most this many (the newest)

STATUS_COLORS = {
    "InProgress": "var(--jp-brand-color1, #1976d2)",
    "Creating": "var(--jp-brand-color1, #1976d2)",
    "Updating": "var(--jp-brand-color1, #1976d2)",
    "SystemUpdating": "var(--jp-brand-color1, #1976d2)",
    "Completed": "var(--jp-success-color1, #388e3c)",
    "InService": "var(--jp-success-color1, #388e3c)",
    "Failed": "var(--jp-error-color1, #d32f2f)",
    "Stopped": "var(--jp-warn-color1, #f57c00)",
    "Stopping": "var(--jp-warn-color1, #f57c00)",
    "OutOfService": "var(--jp-warn-color1, #f57c00)",
    "Deleting": "#757575",
    "Deleted": "#757575",
}
ENDPOINT_FINAL = ("InService", "Failed", "Deleted")

CSS = """<style>
.smr-box { color: var(--jp-ui-font-color1, inherit); line-height: 1.45; }
.smr-title { font-size: var(--jp-ui-font-size2, 1.1em); font-weight: 600; margin-right: 0.6em; }
.smr-meta { color: var(--jp-ui-font-color2, #616161); }
.smr-badge { display: inline-block; padding: 0 0.7em; border-radius: 1em; color: #fff; font-weight: 600;
  line-height: 1.6; font-size: var(--jp-ui-font-size1, 13px); white-space: nowrap; }
.smr-timeline { color: var(--jp-ui-font-color2, #616161); line-height: 1.5; }
.smr-timeline b { color: var(--jp-ui-font-color1, inherit); }
.smr-step { white-space: nowrap; }
.smr-pre { font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 12px);
  color: var(--jp-content-font-color1, inherit); background: var(--jp-layout-color2, rgba(127,127,127,.1));
  border: 1px solid var(--jp-border-color2, rgba(127,127,127,.3)); border-radius: 2px; padding: 4px 8px;
  margin: 2px 0; white-space: pre-wrap; word-break: break-word; line-height: 1.35; }
.smr-scroll { max-height: 18em; overflow: auto; display: flex; flex-direction: column-reverse; }
.smr-section { font-weight: 600; margin-top: 4px; }
.smr-kv { border-collapse: collapse; line-height: 1.5; }
.smr-kv th { text-align: left; font-weight: 600; padding: 0 1em 0 0; vertical-align: top;
  color: var(--jp-ui-font-color2, #616161); white-space: nowrap; }
.smr-kv td { padding: 0; word-break: break-all; }
.smr-kv code, .smr-table code { font-family: var(--jp-code-font-family, monospace);
  font-size: var(--jp-code-font-size, 12px); color: var(--jp-content-font-color1, inherit);
  background: transparent; }
.smr-table { border-collapse: collapse; line-height: 1.5; margin: 4px 0; }
.smr-table th, .smr-table td { text-align: left; padding: 2px 10px 2px 0;
  border-bottom: 1px solid var(--jp-border-color2, rgba(127,127,127,.3)); vertical-align: top; }
.smr-table th { font-weight: 600; color: var(--jp-ui-font-color2, #616161); }
.smr-num { text-align: right !important; font-variant-numeric: tabular-nums; }
.smr-metrics b { font-variant-numeric: tabular-nums; }
.smr-note { color: var(--jp-ui-font-color2, #616161); font-style: italic; }
.smr-error { color: var(--jp-error-color1, #d32f2f); font-weight: 600; }
</style>"""


# -- small helpers ----------------------------------------------------------------------------------------
def esc(text):
    return html.escape("" if text is None else str(text), quote=True)


def fmt_duration(seconds):
    if seconds is None:
        return "–"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def badge(status):
    color = STATUS_COLORS.get(status, "#757575")
    return (f'<span class="smr-badge" data-status="{esc(status)}" style="background: {color}">'
            f"{esc(status)}</span>")


def status_html(status):
    return f'<div class="smr-box">{badge(status)}</div>'


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _children(widget):
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from _children(child)


@contextlib.contextmanager
def batched(*roots):
    """UI_LOCK plus hold_sync on every widget under `roots`: one message per changed widget."""
    with UI_LOCK, contextlib.ExitStack() as stack:
        for root in roots:
            for widget in _children(root):
                stack.enter_context(widget.hold_sync())
        yield


def locked(method):
    """Click handlers run on the kernel's main thread: serialise them with the poller's refreshes."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with UI_LOCK:
            return method(self, *args, **kwargs)

    return wrapper


def _button(description, icon="", tooltip="", css=None, **kwargs):
    button = widgets.Button(description=description, icon=icon, tooltip=tooltip or description,
                            layout=widgets.Layout(width="auto", min_width="6em"), **kwargs)
    button.add_class(css or "smr-" + description.lower().replace(" ", "-"))
    return button


class _Confirm(widgets.HBox):
    """A small "Really stop X?  [Confirm stop] [Cancel]" row, hidden until asked."""

    def __init__(self, action, label="Confirm stop"):
        self.prompt = widgets.HTML()
        self.confirm_button = _button(label, icon="check", button_style="")
        self.cancel_button = _button("Cancel", icon="times")
        self._action = action
        self._on_cancel = None
        self.confirm_button.on_click(self._confirm)
        self.cancel_button.on_click(self._cancel)
        super().__init__([self.prompt, self.confirm_button, self.cancel_button],
                         layout=widgets.Layout(display="none", align_items="center", flex_flow="row wrap"))

    @property
    def is_open(self):
        return self.layout.display != "none"

    def ask(self, text, on_cancel=None):
        self.prompt.value = f'<span class="smr-box" style="margin-right: 0.6em">{text}</span>'
        self._on_cancel = on_cancel
        self.layout.display = "flex"

    def close_prompt(self):
        self.layout.display = "none"

    @locked
    def _confirm(self, _button=None):
        self.close_prompt()
        self._action()

    @locked
    def _cancel(self, _button=None):
        self.close_prompt()
        if self._on_cancel:
            self._on_cancel()


def _as_of(handle, description, lines=None):
    """A copy of the handle that reads only `description` (and `lines` as its log): a view renders it
    between polls without any API call."""
    snapshot = copy.copy(handle)
    snapshot._cached = lambda: description
    if lines is not None:
        snapshot.logs = lambda: "\n".join(lines) + ("\n" if lines else "")
    return snapshot


class _Shown:
    """Shown once per cell, with a display id, so that every output of the view can be re-sent when its
    handle settles: the text/plain part (what viewers without widgets show, e.g. a saved notebook on
    GitHub) then holds the final summary instead of the one from display time."""

    _shown_in = None
    _displays = ()
    _settled = None

    def start(self):
        request = _request_id()
        if request is None or request != self._shown_in:
            self._shown_in = request
            handle = display(self, display_id=True)
            if handle is not None:
                self._displays = (*self._displays, handle)

    def _settle(self, status):
        if status != self._settled:
            self._settled = status
            for handle in self._displays:
                handle.update(self)


def _plain(widget_cls):
    """Give a widget a text/plain representation that says something (never a raw widget repr)."""

    def _repr_mimebundle_(self, **kwargs):
        data = widgets.DOMWidget._repr_mimebundle_(self, **kwargs)
        if data:
            try:
                data["text/plain"] = self.text_summary()
            except Exception:  # pragma: no cover - keep the default on any trouble
                pass
        return data

    widget_cls._repr_mimebundle_ = _repr_mimebundle_
    return widget_cls


# -- jobs ----------------------------------------------------------------------------------------------
def timeline_html(transitions, now=None):
    """Starting 0.2s › Downloading 0.0s › Training 12s … (the current step bold, still ticking)."""
    now = now or _now()
    steps = []
    shown = [t for t in transitions if t.get("Status") not in TERMINAL]
    for index, step in enumerate(shown):
        start, end = step.get("StartTime"), step.get("EndTime")
        current = end is None and index == len(shown) - 1
        seconds = ((end or now) - start).total_seconds() if start else None
        text = f"{esc(step.get('Status'))} {fmt_duration(seconds)}"
        title = esc(step.get("StatusMessage") or "")
        steps.append(f'<span class="smr-step" title="{title}">' + (f"<b>{text} …</b>" if current else text)
                     + "</span>")
    if not steps:
        return ""
    return '<div class="smr-box smr-timeline">' + " › ".join(steps) + "</div>"


def _kv_table(rows):
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="smr-kv">{body}</table>'


def log_html(lines, limit, note=""):
    if not lines:
        return '<div class="smr-box smr-note">no log lines yet</div>'
    shown = lines[-limit:] if limit else lines
    head = ""
    if len(shown) < len(lines):
        head = f'<div class="smr-box smr-note">last {len(shown)} of {len(lines)} lines{note}</div>'
    text = esc("\n".join(shown))
    return f'{head}<div class="smr-scroll"><pre class="smr-pre">{text}</pre></div>'


_JOB_VIEWS = {}


def _describe_interval(handle):
    """Seconds between status/log calls from the poller: the backend's fastest polling pace (local 0.05 s
    -> every poller round, sagemaker 5 s), so many widgets do not hammer a remote API. The elapsed time
    still ticks every round from the cached description."""
    low = (getattr(getattr(handle, "backend", None), "poll_interval", None) or (0.5, 5.0))[0]
    return max(POLLER.interval, low)


@_plain
class JobWidget(_Shown, widgets.VBox):
    """Progress of one processing or training job; drive with start/update/finish/detached."""

    @classmethod
    def for_job(cls, job):
        """The job's widget (one model per job, shown in as many cells as it is displayed in)."""
        key = (job.backend_name, job.kind, job.name)
        with UI_LOCK:
            view = _JOB_VIEWS.get(key)
            if view is None or view.comm is None:  # closed views are replaced
                view = _JOB_VIEWS[key] = cls(job)
            return view

    def __init__(self, job, tail_lines=TAIL_LINES):
        self.job = job
        self.tail_lines = tail_lines
        self.status = None
        self._stopping = False
        self._waiting = False
        self._final = False
        self._last_describe = 0.0
        self._lines = []
        self.title = widgets.HTML(layout=widgets.Layout(margin="0 0.6em 0 0"))
        self.status_html = widgets.HTML()
        self.elapsed_html = widgets.HTML(layout=widgets.Layout(margin="0 0 0 0.6em"))
        self.header = widgets.HBox([self.title, self.status_html, self.elapsed_html],
                                   layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        self.timeline = widgets.HTML()
        self.details = widgets.HTML()
        self.log_view = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.stop_button = _button("Stop", icon="stop", tooltip="Stop the job (asks for confirmation)")
        self.logs_button = widgets.ToggleButton(value=False, description="Show all logs", icon="list",
                                                tooltip="Show every log line instead of the last ones",
                                                layout=widgets.Layout(width="auto", min_width="6em"))
        self.logs_button.add_class("smr-logs")
        self.confirm = _Confirm(self._do_stop, "Confirm stop")
        self.confirm_button = self.confirm.confirm_button
        self.cancel_button = self.confirm.cancel_button
        self.message = widgets.HTML()
        self.buttons = widgets.HBox([self.stop_button, self.logs_button, self.confirm],
                                    layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        self.stop_button.on_click(self._ask_stop)
        self.logs_button.observe(self._toggle_logs, names="value")
        super().__init__([self.header, self.timeline, self.details, self.log_view, self.buttons, self.message],
                         layout=widgets.Layout(width="100%", max_width="1100px", padding="2px 0"))
        self.add_class("smr-job-widget")
        self.title.value = (f'{CSS}<div class="smr-box"><span class="smr-title">{esc(job.name)}</span>'
                            f'<span class="smr-meta">{esc(job.kind)} job · {esc(job.backend_name)}</span></div>')
        self.refresh()

    # -- the progress protocol (progress.watch); start() shows it once per cell (_Shown) -----------------
    def update(self):
        """watch() waits in the foreground: say how to get the cell back (buttons are handled once the
        kernel is free again, since the kernel runs one request at a time)."""
        if not self._waiting:
            self._waiting = True
            with batched(self.message):
                self.message.value = ('<div class="smr-box smr-note">waiting for the job in this cell · '
                                      "interrupt the kernel (■) to get the cell back: the job keeps running "
                                      "and this view keeps updating</div>")
        self.refresh()

    def tick(self):
        """Between polls: the clock advances, from the cached description (no API call)."""
        self.refresh(fetch=False)

    def finish(self):
        self.refresh()
        if self._waiting:
            self._waiting = False
            with batched(self.message):
                self.message.value = ""
        if self.job.done:
            POLLER.unregister(self)

    def detached(self):
        """Ctrl-C while waiting: the job keeps running and the poller keeps this view up to date."""
        self._waiting = False
        with batched(self.message):
            self.message.value = ('<div class="smr-box smr-note">detached: the job keeps running and this view '
                                  f"keeps updating; re-attach with %r_attach {esc(self.job.name)}</div>")
        self.follow()

    def follow(self):
        """Keep updating from the background poller until the job ends."""
        if not self._final:
            POLLER.register(self)
        return self

    def poll(self):
        """Called by the poller thread: cheap ticks, describe/log calls at the backend's pace."""
        interval = _describe_interval(self.job)
        fetch = time.monotonic() - self._last_describe >= interval
        self.refresh(fetch=fetch)
        return self._final

    # -- rendering ----------------------------------------------------------------------------------------
    def text_summary(self):
        return self.job.summary()

    def __repr__(self):
        return f"<JobWidget {self.job.name}: {self.status}>"

    def refresh(self, fetch=True):
        if fetch:
            self.job.describe()
            self._last_describe = time.monotonic()
            self.job.poll_logs()
            self._lines = list(getattr(self.job, "_log_lines", None) or self.job.logs().splitlines())
        desc = self.job.describe(refresh=False)
        job = _as_of(self.job, desc, self._lines)  # everything below reads `desc`: no further API calls
        status = desc[STATUS_KEY[job.kind]]
        terminal = status in TERMINAL
        shown = "Stopping" if self._stopping and not terminal else status
        with batched(self):
            self.status = shown
            self.status_html.value = status_html(shown)
            secondary = desc.get("SecondaryStatus")
            verb = "took" if terminal else "elapsed"
            extra = f" · {esc(secondary)}" if secondary and not terminal and secondary != status else ""
            self.elapsed_html.value = (f'<div class="smr-box smr-meta">{verb} {fmt_duration(job.elapsed)}'
                                       f"{extra}</div>")
            self.timeline.value = timeline_html(job.transitions)
            limit = None if self.logs_button.value else (FAILURE_TAIL_LINES if status == "Failed" else self.tail_lines)
            if self.logs_button.value and len(self._lines) > MAX_LOG_LINES:
                limit = MAX_LOG_LINES
            shown_lines = self._lines[-limit:] if limit else self._lines
            reason_logged = status == "Failed" and reason_in_log(job.failure_reason, shown_lines)
            self.details.value = self._details_html(status, job, reason_logged)
            label = ""
            if status == "Failed":
                label = ('<div class="smr-box smr-section">log'
                         + (' <span class="smr-meta">· with the R error and traceback</span>' if reason_logged else "")
                         + "</div>")
            self.log_view.value = label + log_html(self._lines, limit, "" if self.logs_button.value else
                                                   ' · "Show all logs" shows the rest')
            tail = FAILURE_TAIL_LINES if status == "Failed" else self.tail_lines
            self.logs_button.layout.display = "" if self.logs_button.value or len(self._lines) > tail else "none"
            self.stop_button.disabled = terminal or self._stopping
            self.stop_button.layout.display = "none" if terminal else ""
            if terminal:
                self.confirm.close_prompt()
                if "detached" in self.message.value or "waiting for the job" in self.message.value:
                    self.message.value = ""
        if terminal and fetch:
            self._final = True
            self._settle(status)

    def _metric_regexes(self):
        desc = self.job.describe(refresh=False)
        definitions = (desc.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
        return {d["Name"]: d["Regex"] for d in definitions if d.get("Name") and d.get("Regex")}

    def metrics(self, job=None):
        """The --metric values parsed from the log so far (the last match of each regex)."""
        regexes = self._metric_regexes()
        return (job or self.job).metrics(regexes) if regexes else {}

    def _metrics_html(self, job):
        values = self.metrics(job)
        if not values:
            return ""
        text = " · ".join(f"{esc(k)} <b>{v:.6g}</b>" if isinstance(v, float) else f"{esc(k)} <b>{esc(v)}</b>"
                          for k, v in values.items())
        return f'<div class="smr-box smr-metrics"><span class="smr-meta">metrics</span> {text}</div>'

    def _details_html(self, status, job, reason_logged):
        return self._outcome_html(status, job, reason_logged) + self._metrics_html(job)

    def _outcome_html(self, status, job, reason_logged):
        """Outputs and billable time; for a failure the R error, unless the log below already shows it."""
        billable = job.billable_seconds  # SageMaker bills Failed and Stopped jobs too
        billed = ""
        if billable:
            billed = f'<div class="smr-box">{_kv_table([("billable time", fmt_duration(billable))])}</div>'
        if status == "Completed":
            rows = []
            outputs = job.outputs
            if job.kind == "training" and job.model_data:
                rows.append(("model", f"<code>{esc(job.model_data)}</code>"))
                if outputs.get("output"):
                    rows.append(("output data", f"<code>{esc(outputs['output'])}</code>"))
            else:
                rows += [(f"output {name}", f"<code>{esc(uri)}</code>") for name, uri in outputs.items()]
            rows.append(("billable time", fmt_duration(billable) if billable else
                         f"none ({esc(job.backend_name)} backend)"))
            return f'<div class="smr-box">{_kv_table(rows)}</div>'
        if status == "Failed":
            text = ""
            if not reason_logged:
                reason = job.failure_reason or "no failure reason was recorded: see the log below"
                text = (f'<div class="smr-box"><div class="smr-section">R error</div>'
                        f'<pre class="smr-pre">{esc(reason)}</pre></div>')
            return text + billed
        if status == "Stopped":
            reason = job.failure_reason
            text = "stopped" + (f": {esc(reason)}" if reason else "")
            return f'<div class="smr-box smr-note">{text}</div>' + billed
        return ""

    # -- buttons ------------------------------------------------------------------------------------------
    @locked
    def _ask_stop(self, _button=None):
        if self.job.done:
            return
        self.stop_button.disabled = True
        self.confirm.ask(f"Stop <b>{esc(self.job.name)}</b>? R gets SIGTERM; the job ends as Stopped.",
                         on_cancel=lambda: setattr(self.stop_button, "disabled", self.job.done))

    def _do_stop(self):
        try:
            self.job.stop(wait=False)
        except Exception as exc:
            self.message.value = f'<div class="smr-box"><span class="smr-error">stop failed:</span> {esc(exc)}</div>'
            self.stop_button.disabled = False
            return
        self._stopping = True
        self.refresh()
        self.follow()

    @locked
    def _toggle_logs(self, change):
        self.logs_button.description = f"Show last {self.tail_lines} lines" if change["new"] else "Show all logs"
        self.refresh(fetch=False)


# -- endpoints ----------------------------------------------------------------------------------------
CONTENT_TYPES = ("text/csv", "application/json")
ACCEPT_TYPES = ("application/json", "text/csv", "*/*")


def example_payload(predictor, content_type):
    """The "Try it" prefill: a row of the model's own inputs (Predictor.example_payload), else nothing."""
    try:
        return predictor.example_payload(content_type) or ""
    except Exception:
        return ""


def _backend_name(handle):
    name = getattr(handle, "backend_name", None)
    if name:
        return name
    return getattr(getattr(handle, "backend", None), "name", "") or ""


@_plain
class EndpointWidget(_Shown, widgets.VBox):
    """An endpoint: Creating → InService, its name and URL, a "try it" box and a Delete button."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.status = None
        self._final = False
        self._deleting = False
        self._created = time.monotonic()
        self._last_describe = 0.0
        self.title = widgets.HTML(layout=widgets.Layout(margin="0 0.6em 0 0"))
        self.status_html = widgets.HTML()
        self.elapsed_html = widgets.HTML(layout=widgets.Layout(margin="0 0 0 0.6em"))
        self.header = widgets.HBox([self.title, self.status_html, self.elapsed_html],
                                   layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        self.details = widgets.HTML()
        self._examples = {}  # content type -> the prefill shown (asked once the endpoint is InService)
        self.payload = widgets.Textarea(value="", placeholder="request body",
                                        layout=widgets.Layout(width="100%", max_width="48em", height="6em"))
        self.content_type = widgets.Dropdown(options=CONTENT_TYPES, value="text/csv", description="Content type",
                                             style={"description_width": "7em"},
                                             layout=widgets.Layout(width="18em"))
        self.accept = widgets.Dropdown(options=ACCEPT_TYPES, value="application/json", description="Accept",
                                       style={"description_width": "4em"}, layout=widgets.Layout(width="15em"))
        self.send_button = _button("Send", icon="paper-plane", tooltip="POST the payload to /invocations")
        self.response = widgets.HTML()
        self.try_it = widgets.VBox([
            widgets.HTML('<div class="smr-box smr-section">Try it</div>'),
            self.payload,
            widgets.HBox([self.content_type, self.accept, self.send_button],
                         layout=widgets.Layout(align_items="center", flex_flow="row wrap")),
            self.response,
        ], layout=widgets.Layout(width="100%"))
        self.delete_button = _button("Delete", icon="trash", tooltip="Delete the endpoint (asks for confirmation)")
        self.logs_button = widgets.ToggleButton(value=False, description="Logs", icon="list",
                                                tooltip="Show the endpoint's log",
                                                layout=widgets.Layout(width="auto", min_width="6em"))
        self.confirm = _Confirm(self._do_delete, "Confirm delete")
        self.confirm_button = self.confirm.confirm_button
        self.cancel_button = self.confirm.cancel_button
        self.log_view = widgets.HTML()
        self.message = widgets.HTML()
        self.buttons = widgets.HBox([self.delete_button, self.logs_button, self.confirm],
                                    layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        self.send_button.on_click(self.send_payload)
        self.delete_button.on_click(self._ask_delete)
        self.logs_button.observe(self._toggle_logs, names="value")
        self.content_type.observe(self._content_type_changed, names="value")
        super().__init__([self.header, self.details, self.try_it, self.buttons, self.log_view, self.message],
                         layout=widgets.Layout(width="100%", max_width="1100px", padding="2px 0"))
        self.add_class("smr-endpoint-widget")
        self.title.value = (f'{CSS}<div class="smr-box"><span class="smr-title">{esc(predictor.endpoint_name)}</span>'
                            f'<span class="smr-meta">endpoint · {esc(_backend_name(predictor))}</span></div>')
        self.refresh()

    def text_summary(self):
        return f"endpoint {self.predictor.endpoint_name} ({_backend_name(self.predictor)}): {self.status}"

    def __repr__(self):
        return f"<EndpointWidget {self.predictor.endpoint_name}: {self.status}>"

    def update(self):
        self.refresh()

    def tick(self):
        """Between polls: the waiting time advances, from the cached description (no API call)."""
        if self.status in ENDPOINT_FINAL or self.status is None:
            return
        cached = _as_of(self.predictor, self.predictor.describe(refresh=False))
        with batched(self.elapsed_html):
            self.elapsed_html.value = self._waiting_html(cached)

    def finish(self):
        self.refresh()
        POLLER.unregister(self)

    def detached(self):
        self.follow()

    def follow(self):
        if not self._final:
            POLLER.register(self)
        return self

    def poll(self):
        if time.monotonic() - self._last_describe >= _describe_interval(self.predictor):
            self._last_describe = time.monotonic()
            self.refresh()
        else:
            self.tick()
        return self._final

    def _waiting_html(self, predictor):
        try:
            waited = float(predictor.elapsed)
        except Exception:
            waited = time.monotonic() - self._created
        return f'<div class="smr-box smr-meta">waiting {fmt_duration(waited)}</div>'

    def _status(self):
        try:
            return self.predictor.status
        except Exception as exc:  # a deleted endpoint may no longer describe
            if self._deleting:
                return "Deleted"
            raise exc

    def refresh(self, fetch=True):
        status = self._status()
        if self._deleting and status not in ("Deleted", "Failed"):
            status = "Deleting" if status != "Deleted" else status
        with batched(self):
            self.status = status
            self.status_html.value = status_html(status)
            self.elapsed_html.value = "" if status in ENDPOINT_FINAL else self._waiting_html(self.predictor)
            rows = [("name", f"<code>{esc(self.predictor.endpoint_name)}</code>")]
            url = getattr(self.predictor, "url", None)
            if url:
                rows.append(("URL", f"<code>{esc(url)}</code>"))
            details = f'<div class="smr-box">{_kv_table(rows)}</div>'
            if status == "Failed":
                reason = getattr(self.predictor, "failure_reason", None) or "no failure reason was recorded"
                details += (f'<div class="smr-box"><div class="smr-section">Failure</div>'
                            f'<pre class="smr-pre">{esc(reason)}</pre></div>')
            self.details.value = details
            usable = status == "InService"
            if usable and not self.payload.value.strip():
                self.payload.value = self._example(self.content_type.value)
            self.send_button.disabled = not usable
            self.try_it.layout.display = "flex" if status in ("InService", "Creating", "Updating") else "none"
            self.delete_button.disabled = status in ("Deleted", "Deleting") or self._deleting
            if self.logs_button.value:
                try:
                    lines = (self.predictor.logs() or "").splitlines()
                except Exception as exc:
                    lines = [f"(logs unavailable: {exc})"]
                self.log_view.value = log_html(lines, MAX_LOG_LINES)
            else:
                self.log_view.value = ""
        self._final = status in ENDPOINT_FINAL and not self.logs_button.value
        if status in ENDPOINT_FINAL:
            self._settle(status)

    @locked
    def _toggle_logs(self, change):
        self.refresh()
        if change["new"]:
            self.follow()

    # -- try it -------------------------------------------------------------------------------------------
    @locked
    def _content_type_changed(self, change):
        if self.payload.value in self._examples.values() or not self.payload.value.strip():
            self.payload.value = self._example(change["new"]) if self.status == "InService" else ""

    def _example(self, content_type):
        if content_type not in self._examples:
            self._examples[content_type] = example_payload(self.predictor, content_type)
        return self._examples[content_type]

    def send_payload(self, _button=None):
        """POST the payload; the response (or the error) is shown below. The UI lock is not held while
        the request runs, so other widgets keep updating."""
        with batched(self.response, self.send_button):
            body, ctype, accept = self.payload.value, self.content_type.value, self.accept.value
            self.send_button.disabled = True
            self.response.value = '<div class="smr-box smr-note">sending…</div>'
        started = time.monotonic()
        try:
            result = self.predictor.invoke(body.encode("utf-8"), ctype, accept)
            error = None
        except Exception as exc:
            result, error = None, exc
        took = time.monotonic() - started
        with batched(self.response, self.send_button):
            self.send_button.disabled = self.status != "InService"
            if error is not None:
                code = getattr(error, "status_code", None) or getattr(error, "status", None)
                detail = getattr(error, "body", None)
                if isinstance(detail, bytes):
                    detail = detail.decode("utf-8", "replace")
                head = f"error {code}" if code else type(error).__name__
                self.response.value = (f'<div class="smr-box"><span class="smr-error">{esc(head)}</span> '
                                       f'<span class="smr-meta">after {fmt_duration(took)}</span>'
                                       f'<pre class="smr-pre">{esc(detail or error)}</pre></div>')
                self.last_response = None
                return None
            text, rtype = _response_text(result)
            self.last_response = text
            self.response.value = (f'<div class="smr-box"><span class="smr-meta">response'
                                   f'{" (" + esc(rtype) + ")" if rtype else ""} in {fmt_duration(took)}</span>'
                                   f'<div class="smr-scroll"><pre class="smr-pre">{esc(text)}</pre></div></div>')
            return text

    # -- delete -------------------------------------------------------------------------------------------
    @locked
    def _ask_delete(self, _button=None):
        self.delete_button.disabled = True
        self.confirm.ask(f"Delete <b>{esc(self.predictor.endpoint_name)}</b>? Its model and config go too.",
                         on_cancel=lambda: setattr(self.delete_button, "disabled", False))

    def _do_delete(self):
        self._deleting = True
        try:
            self.predictor.delete()
        except Exception as exc:
            self._deleting = False
            self.message.value = f'<div class="smr-box"><span class="smr-error">delete failed:</span> {esc(exc)}</div>'
            self.delete_button.disabled = False
            return
        self.refresh()
        self.follow()


def _response_text(result):
    rtype = None
    if isinstance(result, tuple) and len(result) == 2:
        result, rtype = result
    if isinstance(result, (bytes, bytearray)):
        result = bytes(result).decode("utf-8", "replace")
    if not isinstance(result, str):
        try:
            result = json.dumps(result, indent=2, default=str)
        except (TypeError, ValueError):
            result = repr(result)
    if rtype and "json" in rtype:
        try:
            result = json.dumps(json.loads(result), indent=2)
        except ValueError:
            pass
    return result, rtype


_ENDPOINT_VIEWS = {}


def endpoint_widget(predictor):
    key = predictor.endpoint_name
    with UI_LOCK:
        view = _ENDPOINT_VIEWS.get(key)
        if view is None or view.comm is None:
            view = _ENDPOINT_VIEWS[key] = EndpointWidget(predictor)
        return view


# -- %r_jobs ------------------------------------------------------------------------------------------
_COLUMNS = ("name", "kind", "backend", "status", "duration", "")
_GRID = "minmax(12em, max-content) 6em 5.5em 7.5em 5em minmax(16em, auto)"


def _cell(text, css="smr-box"):
    return widgets.HTML(f'<div class="{css}">{text}</div>', layout=widgets.Layout(overflow="hidden"))


class _JobRow:
    def __init__(self, dashboard, job):
        self.dashboard, self.job = dashboard, job
        self.status = widgets.HTML()
        self.duration = widgets.HTML()
        self.attach_button = _button("Attach", icon="eye", tooltip="Show this job's progress below")
        self.logs_button = _button("Logs", icon="list", tooltip="Show this job's log below")
        self.stop_button = _button("Stop", icon="stop", tooltip="Stop the job (asks for confirmation)")
        self.confirm = _Confirm(self._stop, "Confirm stop")
        self.attach_button.on_click(lambda b: dashboard.show(JobWidget.for_job(job).follow()))
        self.logs_button.on_click(lambda b: dashboard.show_logs(job.name, job.logs()))
        self.stop_button.on_click(self._ask)
        self.cells = [_cell(f"<code>{esc(job.name)}</code>"), _cell(esc(job.kind)), _cell(esc(job.backend_name)),
                      self.status, self.duration,
                      widgets.HBox([self.attach_button, self.logs_button, self.stop_button, self.confirm],
                                   layout=widgets.Layout(flex_flow="row wrap", align_items="center"))]
        self.refresh()

    @locked
    def _ask(self, _button=None):
        self.stop_button.disabled = True
        self.confirm.ask(f"Stop <b>{esc(self.job.name)}</b>?",
                         on_cancel=lambda: setattr(self.stop_button, "disabled", self.job.done))

    def _stop(self):
        self.job.stop(wait=False)
        self.stopping = True
        self.refresh()
        self.dashboard.follow()

    stopping = False

    def refresh(self):
        status = self.job.status
        terminal = status in TERMINAL
        shown = "Stopping" if self.stopping and not terminal else status
        with batched(*self.cells):
            self.status.value = status_html(shown)
            self.duration.value = f'<div class="smr-box smr-num">{fmt_duration(self.job.elapsed)}</div>'
            self.stop_button.disabled = terminal or self.stopping
            self.stop_button.layout.display = "none" if terminal else ""
            if terminal:
                self.confirm.close_prompt()
        return terminal


class _EndpointRow:
    def __init__(self, dashboard, predictor):
        self.dashboard, self.predictor = dashboard, predictor
        self.status = widgets.HTML()
        self.duration = widgets.HTML()
        self.attach_button = _button("Attach", icon="eye", tooltip="Show this endpoint below")
        self.logs_button = _button("Logs", icon="list", tooltip="Show this endpoint's log below")
        self.delete_button = _button("Delete", icon="trash", tooltip="Delete the endpoint (asks for confirmation)")
        self.confirm = _Confirm(self._delete, "Confirm delete")
        self.attach_button.on_click(lambda b: dashboard.show(endpoint_widget(predictor).follow()))
        self.logs_button.on_click(lambda b: dashboard.show_logs(predictor.endpoint_name, predictor.logs()))
        self.delete_button.on_click(self._ask)
        self.cells = [_cell(f"<code>{esc(predictor.endpoint_name)}</code>"), _cell("endpoint"),
                      _cell(esc(_backend_name(predictor))), self.status, self.duration,
                      widgets.HBox([self.attach_button, self.logs_button, self.delete_button, self.confirm],
                                   layout=widgets.Layout(flex_flow="row wrap", align_items="center"))]
        self.deleting = False
        self.refresh()

    @locked
    def _ask(self, _button=None):
        self.delete_button.disabled = True
        self.confirm.ask(f"Delete <b>{esc(self.predictor.endpoint_name)}</b>?",
                         on_cancel=lambda: setattr(self.delete_button, "disabled", False))

    def _delete(self):
        self.deleting = True
        self.predictor.delete()
        self.refresh()

    def refresh(self):
        try:
            status = self.predictor.status
            age = None if status == "Deleted" else self.predictor.elapsed  # up since its creation
        except Exception:
            status, age = ("Deleted" if self.deleting else "Unknown"), None
        with batched(*self.cells):
            self.status.value = status_html(status)
            self.duration.value = f'<div class="smr-box smr-num">{fmt_duration(age)}</div>'
            self.delete_button.disabled = status in ("Deleted", "Deleting")
        return status in ENDPOINT_FINAL


@_plain
class JobsDashboard(widgets.VBox):
    """%r_jobs: this session's jobs and endpoints, with attach / logs / stop / delete buttons."""

    def __init__(self, jobs, endpoints=(), older=0):
        self.jobs = list(jobs)
        self.endpoints = list(endpoints)
        self.older = older
        self.job_rows = [_JobRow(self, job) for job in self.jobs]
        self.endpoint_rows = [_EndpointRow(self, ep) for ep in self.endpoints]
        header = [widgets.HTML(f'<div class="smr-box smr-meta{" smr-num" if c == "duration" else ""}">'
                               f"<b>{esc(c)}</b></div>") for c in _COLUMNS]
        header[0].value = CSS + header[0].value
        cells = header + [c for row in self.job_rows + self.endpoint_rows for c in row.cells]
        self.table = widgets.GridBox(cells, layout=widgets.Layout(
            grid_template_columns=_GRID, grid_gap="2px 12px", align_items="center", width="100%"))
        self.empty = widgets.HTML('<div class="smr-box smr-note">no jobs or endpoints yet in this session</div>')
        self.older_note = widgets.HTML(f'<div class="smr-box smr-note">{esc(older_note(older))}</div>')
        self.detail = widgets.VBox(layout=widgets.Layout(width="100%"))
        self.close_detail = _button("Close", icon="times", tooltip="Hide the view below")
        self.close_detail.layout.display = "none"
        self.close_detail.on_click(lambda b: self.show(None))
        body = [self.table] if cells[len(header):] else [self.empty]
        if older:
            body.append(self.older_note)
        super().__init__(body + [self.close_detail, self.detail],
                         layout=widgets.Layout(width="100%", max_width="1100px"))
        self.add_class("smr-dashboard")
        self._final = False
        self.follow()

    def text_summary(self):
        lines = [f"{j.name}  {j.kind}  {j.backend_name}  {j.status}  {fmt_duration(j.elapsed)}" for j in self.jobs]
        lines += [f"{e.endpoint_name}  endpoint  {_backend_name(e)}" for e in self.endpoints]
        if self.older:
            lines.append(older_note(self.older))
        return "\n".join(lines) or "no jobs yet"

    def __repr__(self):
        return f"<JobsDashboard {len(self.jobs)} jobs, {len(self.endpoints)} endpoints>"

    @locked
    def show(self, view):
        self.detail.children = (view,) if view is not None else ()
        self.close_detail.layout.display = "" if view is not None else "none"

    def show_logs(self, name, text):
        lines = (text or "").splitlines()
        self.show(widgets.HTML(f'{CSS}<div class="smr-box smr-section">log of {esc(name)}</div>'
                               + log_html(lines, MAX_LOG_LINES), layout=widgets.Layout(width="100%")))

    def follow(self):
        if not self._final:
            POLLER.register(self)
        return self

    def poll(self):
        done = True
        for row in self.job_rows + self.endpoint_rows:
            done = row.refresh() and done
        self._final = done
        return done

    def start(self):
        display(self)


# -- the launch form ------------------------------------------------------------------------------------
def _format_pairs(mapping, json_values=False):
    lines = []
    for key, value in (mapping or {}).items():
        if json_values and not isinstance(value, str):
            value = json.dumps(value)
        lines.append(f"{key}={'' if value is None else value}")
    return "\n".join(lines)


def _pair_lines(text):
    return [line.strip() for line in (text or "").splitlines() if line.strip() and not line.strip().startswith("#")]


@_plain
class LaunchForm(widgets.VBox):
    """`%%r_train --form`: the options as a form; each Launch submits the cell with the form's values
    (without waiting) and adds a progress widget and a row in the comparison table."""

    def __init__(self, kind, kwargs, submit):
        from . import config as config_module
        from .config import BACKENDS

        cfg = config_module.current()
        self.kind, self.kwargs, self.submit = kind, dict(kwargs or {}), submit
        self.metric_regexes = dict(self.kwargs.get("metrics") or {})
        self.launched = []  # [(overrides, job)]
        self._metrics = {}
        wide = {"description_width": "10em"}
        self.backend = widgets.Dropdown(options=BACKENDS, value=self.kwargs.get("backend") or cfg.backend,
                                        description="Backend", style=wide, layout=widgets.Layout(width="24em"))
        self.name = widgets.Text(value=self.kwargs.get("name") or "", description="Name",
                                 placeholder=f"r-{kind}" if kind else "", style=wide,
                                 layout=widgets.Layout(width="24em"))
        default_type = cfg.endpoint_instance_type if kind == "endpoint" else cfg.instance_type
        self.instance_type = widgets.Text(value=self.kwargs.get("instance_type") or default_type,
                                          description="Instance type", style=wide, layout=widgets.Layout(width="24em"))
        model = self.kwargs.get("model")
        self.model = widgets.Text(value="" if model is None else str(model), description="Model",
                                  placeholder="the session's latest training job", style=wide,
                                  layout=widgets.Layout(width="40em"))
        self.instance_count = widgets.BoundedIntText(value=self.kwargs.get("instance_count") or cfg.instance_count,
                                                     min=1, max=1000, description="Instances", style=wide,
                                                     layout=widgets.Layout(width="16em"))
        area = widgets.Layout(width="100%", max_width="40em", height="5.5em")
        self.hyperparameters = widgets.Textarea(
            value=_format_pairs(self.kwargs.get("hyperparameters"), json_values=True), description="Hyperparameters",
            placeholder="one KEY=VALUE a line, e.g.\nalpha=0.5\nformula=mpg ~ wt", style=wide, layout=area)
        self.data_option = "inputs" if kind == "processing" else "channels"
        self.data = widgets.Textarea(
            value=_format_pairs(self.kwargs.get(self.data_option)),
            description="Inputs" if kind == "processing" else "Channels",
            placeholder="one NAME=URI a line, e.g.\ntrain=data/train.csv", style=wide, layout=area)
        self.launch_button = _button("Deploy" if kind == "endpoint" else "Launch", icon="play", css="smr-launch",
                                     tooltip="Submit the cell's R code with these values")
        self.message = widgets.HTML()
        self.results = widgets.HTML()
        self.runs = widgets.VBox(layout=widgets.Layout(width="100%"))
        fields = [self.backend, self.name, self.instance_type, self.instance_count]
        if kind == "endpoint":
            fields.append(self.model)
        if kind == "training":
            fields.append(self.hyperparameters)
        if kind in ("training", "processing"):
            fields.append(self.data)
        title = {"training": "Launch a training job", "processing": "Launch a processing job",
                 "endpoint": "Deploy an endpoint"}.get(kind, f"Launch a {kind or 'job'}")
        metrics = ""
        if self.metric_regexes:
            metrics = ('<div class="smr-box smr-meta">metrics: '
                       + ", ".join(f"{esc(k)} = <code>{esc(v)}</code>" for k, v in self.metric_regexes.items())
                       + "</div>")
        head = widgets.HTML(f'{CSS}<div class="smr-box"><span class="smr-title">{esc(title)}</span>'
                            f'<span class="smr-meta">each {esc(self.launch_button.description)} submits the cell '
                            'with these values</span></div>'
                            + metrics)
        self.launch_button.on_click(self.launch)
        super().__init__([head] + fields + [widgets.HBox([self.launch_button, self.message],
                                                         layout=widgets.Layout(align_items="center")),
                                            self.results, self.runs],
                         layout=widgets.Layout(width="100%", max_width="1100px"))
        self.add_class("smr-launch-form")
        self._final = True

    def text_summary(self):
        return f"launch form ({self.kind}): {len(self.launched)} launched"

    def __repr__(self):
        return f"<LaunchForm {self.kind}: {len(self.launched)} launched>"

    def values(self):
        """The overrides for submit(): raises SmRMagicError (shown in the form) on malformed lines."""
        from . import parsing

        values = dict(backend=self.backend.value, instance_type=self.instance_type.value.strip() or None,
                      instance_count=int(self.instance_count.value))
        if self.name.value.strip():
            values["name"] = self.name.value.strip()
        if self.kind == "training":
            values["hyperparameters"] = parsing.parse_hyperparameters(_pair_lines(self.hyperparameters.value))
            values["channels"] = parsing.parse_channels(_pair_lines(self.data.value))
        elif self.kind == "processing":
            values["inputs"] = parsing.parse_inputs(_pair_lines(self.data.value))
        elif self.kind == "endpoint":
            model, given = self.model.value.strip(), self.kwargs.get("model")
            # an unchanged field keeps the handle the line named (--model VAR)
            values["model"] = given if given is not None and model == str(given) else (model or None)
        return values

    @locked
    def launch(self, _button=None):
        try:
            overrides = self.values()
        except Exception as exc:
            self.message.value = f'<div class="smr-box"><span class="smr-error">{esc(exc)}</span></div>'
            return None
        self.message.value = '<div class="smr-box smr-note">submitting…</div>'
        try:
            handle = self.submit(**overrides, wait=False, progress="none")
        except Exception as exc:
            self.message.value = (f'<div class="smr-box"><span class="smr-error">launch failed:</span> '
                                  f"{esc(exc)}</div>")
            return None
        if isinstance(handle, dict):  # --dry-run: the request
            self.message.value = '<div class="smr-box smr-note">dry run: the request that would be sent</div>'
            self.runs.children = self.runs.children + (widgets.HTML(
                f'<pre class="smr-pre">{esc(json.dumps(handle, indent=2, default=str))}</pre>'),)
            return handle
        self.launched.append((overrides, handle))
        self.message.value = (f'<div class="smr-box smr-meta">launched {esc(getattr(handle, "name", ""))} '
                              f"(#{len(self.launched)})</div>")
        view = endpoint_widget(handle) if hasattr(handle, "endpoint_name") else JobWidget.for_job(handle)
        self.runs.children = self.runs.children + (view,)
        view.follow()
        self._final = False
        self.refresh()
        POLLER.register(self)
        return handle

    def poll(self):
        self.refresh()
        return self._final

    def metrics_of(self, job):
        """Metrics parsed from the job's log (cached once the job has ended)."""
        if job.name in self._metrics:
            return self._metrics[job.name]
        values = job.metrics(self.metric_regexes) if self.metric_regexes else {}
        if job.done:
            self._metrics[job.name] = values
        return values

    def rows(self):
        """[{"job", "status", "elapsed", "hyperparameters", "metrics"}] for each launched variant."""
        rows = []
        for overrides, job in self.launched:
            if not hasattr(job, "kind"):
                continue
            rows.append(dict(job=job.name, status=job.status, elapsed=job.elapsed,
                             backend=overrides.get("backend"),
                             hyperparameters=dict(overrides.get("hyperparameters") or {}),
                             metrics=self.metrics_of(job)))
        return rows

    def refresh(self):
        rows = self.rows()
        with batched(self.results):
            self.results.value = self._table(rows)
        self._final = all(row["status"] in TERMINAL + ENDPOINT_FINAL for row in rows)

    def _table(self, rows):
        if not rows:
            return ""
        hp_keys = sorted({k for row in rows for k in row["hyperparameters"]})
        metric_keys = list(self.metric_regexes)
        head = (["#", "job"] + [esc(k) for k in hp_keys] + ["status", "time"]
                + [f"{esc(m)}" for m in metric_keys])
        out = ['<table class="smr-table"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
        for index, row in enumerate(rows, 1):
            hps = [f"<td><code>{_hp_text(row['hyperparameters'], k)}</code></td>" for k in hp_keys]
            metrics = []
            for m in metric_keys:
                value = row["metrics"].get(m)
                text = "–" if value is None else (f"{value:.6g}" if isinstance(value, float) else esc(value))
                metrics.append(f'<td class="smr-num">{text}</td>')
            out.append(f"<tr><td>{index}</td><td><code>{esc(row['job'])}</code></td>" + "".join(hps)
                       + f"<td>{badge(row['status'])}</td><td class=\"smr-num\">{fmt_duration(row['elapsed'])}</td>"
                       + "".join(metrics) + "</tr>")
        out.append("</table>")
        return f'<div class="smr-box">{"".join(out)}</div>'


def _hp_text(hps, key):
    if key not in hps:
        return "–"
    value = hps[key]
    return esc(value if isinstance(value, str) else json.dumps(value))


def launch_form(kind, kwargs, submit):
    """The magics' --form hook: returns the form (displayed as the cell's result)."""
    return LaunchForm(kind, kwargs, submit)
