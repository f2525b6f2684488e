"""%r_jobs in a notebook: the session's jobs, pipeline executions and endpoints as a table, each row with Attach
(its progress view below the table: a job's, an execution's step graph, an endpoint's), Logs, and Stop or Delete
(with confirmation)."""

import ipywidgets as widgets
from IPython.display import display

from ..contract import ENDPOINT_TERMINAL
from .base import TextPart, Confirm, batched, button, locked
from .endpoint import EndpointView
from .html import CSS, esc, fmt_duration, log_html, status_html
from .job import MAX_LOG_LINES, JobView
from .pipeline import PipelineView
from .poller import POLLER
from .text import older_note

COLUMNS = ("name", "kind", "backend", "status", "duration", "")
GRID = "minmax(12em, max-content) minmax(6em, max-content) 5.5em 7.5em 5em minmax(16em, auto)"


def _kind_text(handle):
    return f"pipeline {handle.pipeline_name}" if handle.kind == "pipeline" else handle.kind


def _cell(text, css="smr-box"):
    return widgets.HTML(f'<div class="{css}">{text}</div>', layout=widgets.Layout(overflow="hidden"))


class _Row:
    """One handle's row: name, kind, backend, status, duration and its buttons."""

    action = "Stop"
    view_class = None
    what = "job"

    def __init__(self, dashboard, handle):
        self.dashboard, self.handle = dashboard, handle
        self.acting = False  # stopping or deleting was asked for
        self.status = widgets.HTML()
        self.duration = widgets.HTML()
        what = self.what
        self.attach_button = button("Attach", icon="eye", tooltip=f"Show this {what} below")
        self.logs_button = button("Logs", icon="list", tooltip=f"Show this {what}'s log below")
        self.action_button = button(self.action, icon="stop" if self.action == "Stop" else "trash",
                                    tooltip=f"{self.action} the {what} (asks for confirmation)")
        self.confirm = Confirm(self._act, f"Confirm {self.action.lower()}")
        self.attach_button.on_click(lambda b: dashboard.show(self.view_class.for_handle(handle).follow()))
        self.logs_button.on_click(lambda b: dashboard.show_logs(handle.name, handle.logs()))
        self.action_button.on_click(self._ask)
        self.cells = [_cell(f"<code>{esc(handle.name)}</code>"), _cell(esc(_kind_text(handle))),
                      _cell(esc(handle.backend_name)), self.status, self.duration,
                      widgets.HBox([self.attach_button, self.logs_button, self.action_button, self.confirm],
                                   layout=widgets.Layout(flex_flow="row wrap", align_items="center"))]
        self.refresh()

    @locked
    def _ask(self, _button=None):
        self.action_button.disabled = True
        self.confirm.ask(f"{self.action} <b>{esc(self.handle.name)}</b>?",
                         on_cancel=lambda: setattr(self.action_button, "disabled", self._settled()))

    def _act(self):
        self.acting = True
        self._perform()
        self.refresh()
        self.dashboard.follow()

    def draw(self, status, age, settled):
        with batched(*self.cells):
            self.status.value = status_html(status)
            self.duration.value = f'<div class="smr-box smr-num">{fmt_duration(age)}</div>'
            self.action_button.disabled = settled or self.acting
            if settled:
                self.confirm.close_prompt()


class _JobRow(_Row):
    action = "Stop"
    view_class = JobView

    def _settled(self):
        return self.handle.done

    def _perform(self):
        self.handle.stop(wait=False)

    def refresh(self):
        snap = self.handle.snapshot(fetch="if-stale")
        shown = "Stopping" if self.acting and not snap.terminal else snap.status
        self.draw(shown, snap.elapsed(), snap.terminal)
        self.action_button.layout.display = "none" if snap.terminal else ""
        return snap.terminal


class _ExecutionRow(_JobRow):
    """A pipeline execution: Attach shows its step graph, Logs its steps' logs, Stop stops it."""

    view_class = PipelineView
    what = "pipeline execution"


class _EndpointRow(_Row):
    action = "Delete"
    view_class = EndpointView
    what = "endpoint"

    def _settled(self):
        return False

    def _perform(self):
        self.handle.delete()

    def refresh(self):
        try:
            snap = self.handle.snapshot(fetch="if-stale")
            status, age = snap.status, (None if snap.status == "Deleted" else snap.elapsed())  # up since creation
        except Exception:  # a deleted endpoint may no longer describe itself
            status, age = ("Deleted" if self.acting else "Unknown"), None
        self.draw(status, age, status in ("Deleted", "Deleting"))
        return status in ENDPOINT_TERMINAL


class JobsDashboard(TextPart, widgets.VBox):
    """%r_jobs: this session's jobs, pipeline executions and endpoints, with attach / logs / stop / delete
    buttons."""

    def __init__(self, jobs, endpoints=(), older=0):
        self.jobs = list(jobs)  # pipeline executions among them (kind "pipeline")
        self.endpoints = list(endpoints)
        self.older = older
        self.job_rows = [(_ExecutionRow if job.kind == "pipeline" else _JobRow)(self, job) for job in self.jobs]
        self.endpoint_rows = [_EndpointRow(self, ep) for ep in self.endpoints]
        header = [widgets.HTML(f'<div class="smr-box smr-meta{" smr-num" if c == "duration" else ""}">'
                               f"<b>{esc(c)}</b></div>") for c in COLUMNS]
        header[0].value = CSS + header[0].value
        cells = header + [c for row in self.rows() for c in row.cells]
        self.table = widgets.GridBox(cells, layout=widgets.Layout(
            grid_template_columns=GRID, grid_gap="2px 12px", align_items="center", width="100%"))
        self.empty = widgets.HTML('<div class="smr-box smr-note">no jobs or endpoints yet in this session</div>')
        self.older_note = widgets.HTML(f'<div class="smr-box smr-note">{esc(older_note(older))}</div>')
        self.detail = widgets.VBox(layout=widgets.Layout(width="100%"))
        self.close_detail = button("Close", icon="times", tooltip="Hide the view below")
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
        lines = [f"{j.name}  {_kind_text(j)}  {j.backend_name}  {j.status}  {fmt_duration(j.elapsed)}"
                 for j in self.jobs]
        lines += [f"{e.endpoint_name}  endpoint  {e.backend_name}" for e in self.endpoints]
        if self.older:
            lines.append(older_note(self.older))
        return "\n".join(lines) or "no jobs yet"

    def __repr__(self):
        return f"<JobsDashboard {len(self.jobs)} jobs, {len(self.endpoints)} endpoints>"

    def rows(self):
        return self.job_rows + self.endpoint_rows

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
        for row in self.rows():
            done = row.refresh() and done
        self._final = done
        return done

    def start(self):
        display(self)
