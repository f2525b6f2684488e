"""The widget of one pipeline execution: the step graph (boxes and arrows, status colours, the condition's outcome
on its branches, cached steps marked), the execution's status and elapsed time, the failed step's R error,
the parameters, Stop (with confirmation), and a button per job step that opens that step's job view below."""

import ipywidgets as widgets

from .base import WaitingNote, Confirm, HandleView, batched, button, elapsed_text, error_html, locked, row
from .html import esc, kv_table
from .job import JobView
from .step_graph import StepGraph, svg

JOB_TYPES = ("Processing", "Training")

def show_html(widget, value):
    """An HTML part that takes no room while it is empty."""
    widget.value = value
    widget.layout.display = "" if value else "none"


class PipelineView(WaitingNote, HandleView):
    """Progress of one pipeline execution; watch() drives it in the foreground, the poller thread in the
    background. Every step's state, the arrows and the open step are fields; the HTML is drawn from them."""

    css_class = "smr-pipeline-widget"
    what = "pipeline execution"
    stop_consequence = "Running steps' jobs get SIGTERM, no further step starts; the execution ends as Stopped."

    def __init__(self, execution, **kwargs):
        self.step_graph = None     # the definition's steps, layers and edges (read once: they never change)
        self.states = {}           # step name -> step_graph.StepState, as last drawn
        self.arrows = []           # step_graph.Arrow, as last drawn
        self.parameters = None     # name -> value (an execution's parameters never change)
        self.open_step = None      # the step whose job view is shown below the graph
        self._stopping = False
        super().__init__(execution, **kwargs)

    @property
    def execution(self):
        return self.handle

    def _kind_label(self):
        return f"pipeline {self.handle.pipeline_name} execution"

    def _body(self):
        self.graph_html = widgets.HTML(layout=widgets.Layout(width="100%", overflow="auto"))
        self.failure_html = widgets.HTML()
        self.parameters_html = widgets.HTML()
        self.stop_button = button("Stop", icon="stop", tooltip="Stop the execution (asks for confirmation)")
        self.confirm = Confirm(self._do_stop, "Confirm stop")
        self.confirm_button = self.confirm.confirm_button
        self.cancel_button = self.confirm.cancel_button
        self.stop_button.on_click(self._ask_stop)
        self.step_buttons = {}     # job step name -> its button (made once the definition is read)
        self.steps_label = widgets.HTML('<div class="smr-box smr-meta" style="margin-right: 0.4em">'
                                        "step jobs:</div>")
        self.steps_row = row([self.steps_label])
        self.buttons = row([self.stop_button, self.confirm])
        self.job_box = widgets.VBox(layout=widgets.Layout(width="100%"))
        return [self.graph_html, self.failure_html, self.parameters_html, self.buttons, self.steps_row,
                self.job_box]

    # -- drawing -----------------------------------------------------------------------------------------
    def refresh(self, fetch=True):
        """Describe the execution and its steps, but read no log: the graph shows none (a step's job view reads
        its own), and on SageMaker every step's CloudWatch log would be read at each refresh."""
        super().refresh("if-stale" if fetch else False)

    def render(self, snap, now):
        if self.step_graph is None:
            self.step_graph = StepGraph(self.handle.definition, snap.edges)
            self._make_step_buttons()
        shown = "Stopping" if self._stopping and not snap.terminal else snap.status
        self.show_status(shown)
        self.render_clock(snap, now)
        self._render_failure(snap)
        self._render_parameters()
        for name, step_button in self.step_buttons.items():
            step_button.disabled = not self.states[name].has_job
            step_button.button_style = "info" if name == self.open_step else ""
        self.settled_controls(snap)
        self.buttons.layout.display = "none" if snap.terminal else ""  # an empty row would leave a gap

    def render_clock(self, snap, now):
        """The elapsed time and the running steps' durations advance (no backend call)."""
        self.elapsed_html.value = f'<div class="smr-box smr-meta">{elapsed_text(snap, now)}</div>'
        self.states = self.step_graph.states(snap.steps, snap.terminal, now)
        self.arrows = self.step_graph.arrows(self.states)
        self.graph_html.value = svg(self.step_graph, self.states, self.arrows)

    def _render_failure(self, snap):
        """The failed step's R error (or the Fail step's message), once: the execution's own reason repeats it."""
        if snap.status != "Failed":
            show_html(self.failure_html, "")
            return
        self.reason_shown = True
        failed = next((s for s in self.states.values() if s.status == "Failed"), None)
        if failed is not None:
            head = f"step {failed.name} failed"
            reason = failed.reason or snap.failure_reason
        else:
            head, reason = "the execution failed", snap.failure_reason
        text = reason or "no failure reason was recorded"
        if failed is not None and failed.has_job:
            text += f"\n\n(the step's job view has its full log: press {failed.name} below)"
        show_html(self.failure_html, f'<div class="smr-box"><div class="smr-section"><span class="smr-error">'
                                     f'{esc(head)}</span></div><pre class="smr-pre">{esc(text)}</pre></div>')

    def _render_parameters(self):
        if self.parameters is None:
            self.parameters = dict(self.handle.parameters)
            rows = [(name, f"<code>{esc(value)}</code>") for name, value in self.parameters.items()]
            show_html(self.parameters_html, '<div class="smr-box"><div class="smr-section">parameters</div>'
                      f"{kv_table(rows)}</div>" if rows else "")

    def _make_step_buttons(self):
        for name in self.step_graph.order:
            if self.step_graph.types[name] in JOB_TYPES:
                made = button(name, icon="eye", tooltip=f"Show the job of step {name} below",
                              css="smr-step-button")
                made.on_click(lambda _b, name=name: self.toggle_step(name))
                self.step_buttons[name] = made
        self.steps_row.children = [self.steps_label, *self.step_buttons.values()]
        self.steps_row.layout.display = "" if self.step_buttons else "none"

    # -- buttons -------------------------------------------------------------------------------------------
    @locked
    def toggle_step(self, name):
        """Show the job view of step `name` below the graph (again: hide it)."""
        if name == self.open_step:
            self.open_step, self.job_box.children = None, ()
        else:
            try:
                view = JobView.for_handle(self.handle.step_job(name))
            except Exception as exc:  # e.g. its job can no longer be read
                self.message.value = error_html(f"step {name}:", exc)
                return
            view.settle_or_follow()
            self.open_step, self.job_box.children = name, (view,)
        with batched(self):
            for step_name, step_button in self.step_buttons.items():
                step_button.button_style = "info" if step_name == self.open_step else ""
