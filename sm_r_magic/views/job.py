"""The progress widget of one processing or training job: status, elapsed time, the step timeline, outputs or
the R error, metrics, the log tail, Stop (with confirmation) and "Show all logs"."""

import ipywidgets as widgets

from .base import WaitingNote, Confirm, HandleView, batched, button, elapsed_text, locked, logs_toggle, row
from .html import esc, fmt_duration, kv_table, log_html, timeline_html
from .text import reason_in_log

TAIL_LINES = 15
FAILURE_TAIL_LINES = 40
MAX_LOG_LINES = 20000  # the "all logs" view shows at most this many (the newest)


class JobView(WaitingNote, HandleView):
    """Progress of one job; watch() drives it in the foreground, the poller thread in the background."""

    css_class = "smr-job-widget"

    def __init__(self, job, tail_lines=TAIL_LINES, **kwargs):
        self.tail_lines = tail_lines
        self._stopping = False
        super().__init__(job, **kwargs)

    job = property(lambda self: self.handle)

    def _body(self):
        self.timeline = widgets.HTML()
        self.details = widgets.HTML()
        self.log_view = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.stop_button = button("Stop", icon="stop", tooltip="Stop the job (asks for confirmation)")
        self.logs_button = logs_toggle("Show all logs", "Show every log line instead of the last ones")
        self.confirm = Confirm(self._do_stop, "Confirm stop")
        self.confirm_button = self.confirm.confirm_button
        self.cancel_button = self.confirm.cancel_button
        self.buttons = row([self.stop_button, self.logs_button, self.confirm])
        self.stop_button.on_click(self._ask_stop)
        self.logs_button.observe(self._toggle_logs, names="value")
        return [self.timeline, self.details, self.log_view, self.buttons]

    # -- drawing -----------------------------------------------------------------------------------------
    def render_clock(self, snap, now):
        self.elapsed_html.value = self._elapsed_html(snap, now)
        self.timeline.value = timeline_html(snap.transitions, now)

    def _elapsed_html(self, snap, now):
        extra = ""
        if snap.secondary_status and not snap.terminal and snap.secondary_status != snap.status:
            extra = f" · {esc(snap.secondary_status)}"
        return f'<div class="smr-box smr-meta">{elapsed_text(snap, now)}{extra}</div>'

    def render(self, snap, now):
        shown = "Stopping" if self._stopping and not snap.terminal else snap.status
        self.show_status(shown)
        self.render_clock(snap, now)
        lines = snap.log_lines
        limit = self._log_limit(snap, len(lines))
        shown_lines = lines[-limit:] if limit else lines
        reason_logged = snap.status == "Failed" and reason_in_log(snap.failure_reason, shown_lines)
        if snap.status == "Failed":
            self.reason_shown = True  # in the log below, or in the "R error" box
        self.details.value = self._outcome_html(snap, reason_logged) + self._metrics_html(snap)
        label = ""
        if snap.status == "Failed":
            label = ('<div class="smr-box smr-section">log'
                     + (' <span class="smr-meta">· with the R error and traceback</span>' if reason_logged else "")
                     + "</div>")
        self.log_view.value = label + log_html(lines, limit, "" if self.logs_button.value else
                                               ' · "Show all logs" shows the rest')
        tail = FAILURE_TAIL_LINES if snap.status == "Failed" else self.tail_lines
        self.logs_button.layout.display = "" if self.logs_button.value or len(lines) > tail else "none"
        self.settled_controls(snap)

    def _log_limit(self, snap, count):
        if self.logs_button.value:
            return MAX_LOG_LINES if count > MAX_LOG_LINES else None
        return FAILURE_TAIL_LINES if snap.status == "Failed" else self.tail_lines

    def _metrics_html(self, snap):
        values = snap.metrics()
        if not values:
            return ""
        text = " · ".join(f"{esc(k)} <b>{v:.6g}</b>" if isinstance(v, float) else f"{esc(k)} <b>{esc(v)}</b>"
                          for k, v in values.items())
        return f'<div class="smr-box smr-metrics"><span class="smr-meta">metrics</span> {text}</div>'

    def _outcome_html(self, snap, reason_logged):
        """Outputs and billable time; for a failure the R error, unless the log below already shows it."""
        billable = snap.billable_seconds  # SageMaker bills Failed and Stopped jobs too
        billed = f'<div class="smr-box">{kv_table([("billable time", fmt_duration(billable))])}</div>' \
            if billable else ""
        if snap.status == "Completed":
            rows = []
            if snap.kind == "training" and snap.model_data:
                rows.append(("model", f"<code>{esc(snap.model_data)}</code>"))
                if snap.outputs.get("output"):
                    rows.append(("output data", f"<code>{esc(snap.outputs['output'])}</code>"))
            else:
                rows += [(f"output {name}", f"<code>{esc(uri)}</code>") for name, uri in snap.outputs.items()]
            rows.append(("billable time", fmt_duration(billable) if billable else
                         f"none ({esc(snap.backend)} backend)"))
            return f'<div class="smr-box">{kv_table(rows)}</div>'
        if snap.status == "Failed":
            text = ""
            if not reason_logged:
                reason = snap.failure_reason or "no failure reason was recorded: see the log below"
                text = (f'<div class="smr-box"><div class="smr-section">R error</div>'
                        f'<pre class="smr-pre">{esc(reason)}</pre></div>')
            return text + billed
        if snap.status == "Stopped":
            text = "stopped" + (f": {esc(snap.failure_reason)}" if snap.failure_reason else "")
            return f'<div class="smr-box smr-note">{text}</div>' + billed
        return ""

    def metrics(self):
        """The --metric values parsed from the log so far (the last match of each regex)."""
        return (self.snapshot or self.handle.snapshot()).metrics()

    # -- buttons -------------------------------------------------------------------------------------------
    @locked
    def _toggle_logs(self, change):
        self.logs_button.description = f"Show last {self.tail_lines} lines" if change["new"] else "Show all logs"
        with batched(self):
            self.render(self.snapshot, self.clock())
