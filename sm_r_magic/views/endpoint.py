"""The endpoint widget: Creating -> InService, its name and URL, a "Try it" box that POSTs to /invocations,
the server's log, and Delete (with confirmation)."""

import dataclasses
import json
import time

import ipywidgets as widgets

from .base import Confirm, HandleView, batched, button, locked, logs_toggle, row
from .html import esc, fmt_duration, kv_table, log_html

CONTENT_TYPES = ("text/csv", "application/json")
ACCEPT_TYPES = ("application/json", "text/csv", "*/*")
MAX_LOG_LINES = 20000
SETTLED = ("InService", "Failed", "Deleted")


class EndpointView(HandleView):
    css_class = "smr-endpoint-widget"

    predictor = property(lambda self: self.handle)

    def _body(self):
        self._deleting = False
        self.last_response = None
        self._examples = {}  # content type -> the prefill shown (asked once the endpoint is InService)
        self.details = widgets.HTML()
        self.payload = widgets.Textarea(value="", placeholder="request body",
                                        layout=widgets.Layout(width="100%", max_width="48em", height="6em"))
        self.content_type = widgets.Dropdown(options=CONTENT_TYPES, value="text/csv", description="Content type",
                                             style={"description_width": "7em"}, layout=widgets.Layout(width="18em"))
        self.accept = widgets.Dropdown(options=ACCEPT_TYPES, value="application/json", description="Accept",
                                       style={"description_width": "4em"}, layout=widgets.Layout(width="15em"))
        self.send_button = button("Send", icon="paper-plane", tooltip="POST the payload to /invocations")
        self.response = widgets.HTML()
        self.try_it = widgets.VBox([widgets.HTML('<div class="smr-box smr-section">Try it</div>'), self.payload,
                                    row([self.content_type, self.accept, self.send_button]), self.response],
                                   layout=widgets.Layout(width="100%"))
        self.delete_button = button("Delete", icon="trash", tooltip="Delete the endpoint (asks for confirmation)")
        self.logs_button = logs_toggle("Logs", "Show the endpoint's log")
        self.confirm = Confirm(self._do_delete, "Confirm delete")
        self.confirm_button = self.confirm.confirm_button
        self.cancel_button = self.confirm.cancel_button
        self.log_view = widgets.HTML()
        self.buttons = row([self.delete_button, self.logs_button, self.confirm])
        self.send_button.on_click(self.send_payload)
        self.delete_button.on_click(self._ask_delete)
        self.logs_button.observe(self._toggle_logs, names="value")
        self.content_type.observe(self._content_type_changed, names="value")
        return [self.details, self.try_it, self.buttons, self.log_view]

    def text_summary(self):
        return f"endpoint {self.handle.name} ({self.handle.backend_name}): {self.status}"

    def _settles(self, snap):
        return not self.logs_button.value  # an open log keeps following

    # -- drawing -----------------------------------------------------------------------------------------
    def refresh(self, fetch=True):
        try:
            super().refresh(fetch)
        except Exception:
            if not self._deleting or self.snapshot is None:
                raise
            # a deleted endpoint may no longer describe itself (docker: its folder is gone)
            self.snapshot = dataclasses.replace(self.snapshot, status="Deleted", terminal=True)
            with batched(self):
                self.render(self.snapshot, self.clock())
            self._final = self._settles(self.snapshot)
            self._settle("Deleted")
            return
        # InService is settled for a view (creation has ended), though the snapshot's age keeps growing
        if fetch and self.snapshot.status == "InService":
            self._final = self._settles(self.snapshot)
            self._settle("InService")

    def _shown_status(self, snap):
        if self._deleting and snap.status not in ("Deleted", "Failed"):
            return "Deleting"
        return snap.status

    def render_clock(self, snap, now):
        waiting = snap.status not in SETTLED and not self._deleting
        self.elapsed_html.value = (f'<div class="smr-box smr-meta">waiting {fmt_duration(snap.elapsed(now))}</div>'
                                   if waiting else "")

    def render(self, snap, now):
        status = self._shown_status(snap)
        self.show_status(status)
        self.render_clock(snap, now)
        rows = [("name", f"<code>{esc(snap.name)}</code>")]
        if snap.url:
            rows.append(("URL", f"<code>{esc(snap.url)}</code>"))
        details = f'<div class="smr-box">{kv_table(rows)}</div>'
        if status == "Failed":
            self.reason_shown = True
            reason = snap.failure_reason or "no failure reason was recorded"
            details += (f'<div class="smr-box"><div class="smr-section">Failure</div>'
                        f'<pre class="smr-pre">{esc(reason)}</pre></div>')
        self.details.value = details
        if status == "InService" and not self.payload.value.strip():
            self.payload.value = self._example(self.content_type.value)
        self.send_button.disabled = status != "InService"
        self.try_it.layout.display = "flex" if status in ("InService", "Creating", "Updating") else "none"
        self.delete_button.disabled = status in ("Deleted", "Deleting")
        if self.logs_button.value:
            try:
                lines = (self.handle.logs() or "").splitlines()
            except Exception as exc:
                lines = [f"(logs unavailable: {exc})"]
            self.log_view.value = log_html(lines, MAX_LOG_LINES)
        else:
            self.log_view.value = ""

    @locked
    def _toggle_logs(self, change):
        self.refresh()
        if change["new"]:
            self._final = False
            self.follow()

    # -- try it ------------------------------------------------------------------------------------------
    @locked
    def _content_type_changed(self, change):
        if self.payload.value in self._examples.values() or not self.payload.value.strip():
            self.payload.value = self._example(change["new"]) if self.status == "InService" else ""

    def _example(self, content_type):
        """The "Try it" prefill: a row of the model's own inputs (Predictor.example_payload), else nothing."""
        if content_type not in self._examples:
            try:
                self._examples[content_type] = self.handle.example_payload(content_type) or ""
            except Exception:
                self._examples[content_type] = ""
        return self._examples[content_type]

    def send_payload(self, _button=None):
        """POST the payload; the response (or the error) is shown below. The UI lock is not held while the
        request runs, so other widgets keep updating."""
        with batched(self.response, self.send_button):
            body, ctype, accept = self.payload.value, self.content_type.value, self.accept.value
            self.send_button.disabled = True
            self.response.value = '<div class="smr-box smr-note">sending…</div>'
        started = time.monotonic()
        try:
            result, error = self.handle.invoke(body.encode("utf-8"), ctype, accept), None
        except Exception as exc:
            result, error = None, exc
        took = time.monotonic() - started
        with batched(self.response, self.send_button):
            self.send_button.disabled = self.status != "InService"
            if error is not None:
                self.last_response = None
                self.response.value = _error_html(error, took)
                return None
            text, rtype = response_text(result)
            self.last_response = text
            self.response.value = (f'<div class="smr-box"><span class="smr-meta">response'
                                   f'{" (" + esc(rtype) + ")" if rtype else ""} in {fmt_duration(took)}</span>'
                                   f'<div class="smr-scroll"><pre class="smr-pre">{esc(text)}</pre></div></div>')
            return text

    # -- delete ------------------------------------------------------------------------------------------
    @locked
    def _ask_delete(self, _button=None):
        self.delete_button.disabled = True
        self.confirm.ask(f"Delete <b>{esc(self.handle.name)}</b>? Its model and config go too.",
                         on_cancel=lambda: setattr(self.delete_button, "disabled", False))

    def _do_delete(self):
        self._deleting = True
        if not self.act(self.handle.delete, "delete", self.delete_button):
            self._deleting = False
            return
        self._final = False
        self.refresh()
        self.follow()


def _error_html(error, took):
    code = getattr(error, "status_code", None) or getattr(error, "status", None)
    detail = getattr(error, "body", None)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    head = f"error {code}" if code else type(error).__name__
    return (f'<div class="smr-box"><span class="smr-error">{esc(head)}</span> '
            f'<span class="smr-meta">after {fmt_duration(took)}</span>'
            f'<pre class="smr-pre">{esc(detail or error)}</pre></div>')


def response_text(result):
    """(body, content type) of an invocation as text to show (JSON pretty-printed)."""
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
