"""What every widget view shares: a header (title, status badge, elapsed time), a confirm row for destructive
buttons, a "show logs" toggle, display once per cell, a text/plain part that says something, and refreshing from
the kernel's poller thread at the backend's pace while the clock ticks in between.

Views render from handle snapshots (handle.snapshot()) and keep their own state in fields, never in the HTML
they render. Every widget mutation runs under poller.UI_LOCK and is batched with hold_sync, so one refresh sends
at most one message per changed widget.
"""

import contextlib
import functools
import time

import ipywidgets as widgets
from IPython.display import display

from ..contract import KIND_LABEL
from ..handle import utc_now
from .frontend import request_id
from .html import CSS, esc, fmt_duration, status_html
from .poller import POLLER, UI_LOCK


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


def button(description, icon="", tooltip="", css=None, **kwargs):
    made = widgets.Button(description=description, icon=icon, tooltip=tooltip or description,
                          layout=widgets.Layout(width="auto", min_width="6em"), **kwargs)
    made.add_class(css or "smr-" + description.lower().replace(" ", "-"))
    return made


def row(children):
    return widgets.HBox(children, layout=widgets.Layout(align_items="center", flex_flow="row wrap"))


def note_html(text):
    return f'<div class="smr-box smr-note">{text}</div>' if text else ""


def error_html(head, detail):
    return f'<div class="smr-box"><span class="smr-error">{esc(head)}</span> {esc(detail)}</div>'


class Confirm(widgets.HBox):
    """A small "Really stop X?  [Confirm stop] [Cancel]" row, hidden until asked."""

    def __init__(self, action, label="Confirm stop"):
        self.prompt = widgets.HTML()
        self.confirm_button = button(label, icon="check", button_style="")
        self.cancel_button = button("Cancel", icon="times")
        self._action = action
        self._on_cancel = None
        self.is_open = False
        self.confirm_button.on_click(self._confirm)
        self.cancel_button.on_click(self._cancel)
        super().__init__([self.prompt, self.confirm_button, self.cancel_button],
                         layout=widgets.Layout(display="none", align_items="center", flex_flow="row wrap"))

    def ask(self, text, on_cancel=None):
        self.prompt.value = f'<span class="smr-box" style="margin-right: 0.6em">{text}</span>'
        self._on_cancel = on_cancel
        self.is_open = True
        self.layout.display = "flex"

    def close_prompt(self):
        self.is_open = False
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


def logs_toggle(description, tooltip):
    toggle = widgets.ToggleButton(value=False, description=description, icon="list", tooltip=tooltip,
                                  layout=widgets.Layout(width="auto", min_width="6em"))
    toggle.add_class("smr-logs")
    return toggle


def describe_interval(handle):
    """Seconds between backend calls from the poller: the backend's fastest polling pace (local 0.05 s ->
    every poller round, sagemaker 5 s), so many widgets do not hammer a remote API."""
    low = (getattr(getattr(handle, "backend", None), "poll_interval", None) or (0.5, 5.0))[0]
    return max(POLLER.interval, low)


class TextPart:
    """A widget's display bundle also carries a text/plain part that says something (the summary), never a raw
    widget repr: what viewers without widgets (a saved notebook on GitHub, nbconvert to text) show."""

    def _repr_mimebundle_(self, **kwargs):
        data = widgets.DOMWidget._repr_mimebundle_(self, **kwargs)
        if data:
            try:
                data["text/plain"] = self.text_summary()
            except Exception:  # pragma: no cover - keep the default on any trouble
                pass
        return data


class HandleView(TextPart, widgets.VBox):
    """Base of the job and endpoint views. Subclasses build their body in `_body()` and draw a snapshot in
    `render(snapshot, now)`; `render_clock(snapshot, now)` redraws only what time changes."""

    css_class = "smr-view"
    views = None  # per subclass: handle key -> view, so a handle has one view however often it is shown

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.views = {}

    @classmethod
    def for_handle(cls, handle):
        key = (handle.backend_name, handle.kind, handle.name)
        with UI_LOCK:
            view = cls.views.get(key)
            if view is None or view.comm is None:  # closed views are replaced
                view = cls.views[key] = cls(handle)
            return view

    def __init__(self, handle, clock=utc_now):
        self.handle = handle
        self.clock = clock
        self.status = None           # the status shown (may be "Stopping"/"Deleting" before the handle says so)
        self.snapshot = None         # the last reading of the handle
        self.note = ""               # the line under the buttons ("waiting in this cell", "detached", ...)
        self.reason_shown = False
        self._final = False          # settled and drawn: nothing more to poll for
        self._last_fetch = 0.0
        self._shown_in = None
        self._displays = ()
        self._settled = None
        self.title = widgets.HTML(layout=widgets.Layout(margin="0 0.6em 0 0"))
        self.status_html = widgets.HTML()
        self.elapsed_html = widgets.HTML(layout=widgets.Layout(margin="0 0 0 0.6em"))
        self.header = row([self.title, self.status_html, self.elapsed_html])
        self.message = widgets.HTML()
        super().__init__([self.header] + self._body() + [self.message],
                         layout=widgets.Layout(width="100%", max_width="1100px", padding="2px 0"))
        self.add_class(self.css_class)
        self.title.value = (f'{CSS}<div class="smr-box"><span class="smr-title">{esc(handle.name)}</span>'
                            f'<span class="smr-meta">{esc(self._kind_label())} · {esc(handle.backend_name)}</span>'
                            "</div>")
        self.refresh()

    # -- for subclasses --------------------------------------------------------------------------------------
    def _body(self):
        return []

    def _kind_label(self):
        return KIND_LABEL.get(self.handle.kind, self.handle.kind)

    def render(self, snap, now):
        raise NotImplementedError

    def render_clock(self, snap, now):
        raise NotImplementedError

    def text_summary(self):
        return self.handle.summary()

    # -- reading and drawing -------------------------------------------------------------------------------
    def refresh(self, fetch=True):
        snap = self.handle.snapshot(fetch=fetch or self.snapshot is None)
        self.snapshot = snap
        with batched(self):
            self.render(snap, self.clock())
        if snap.terminal and fetch:
            self._final = self._settles(snap)
            self._settle(snap.status)

    def _settles(self, snap):
        return True

    def act(self, action, what, button):
        """Run a button's action; a failure shows in the view's message line and gives the button back."""
        try:
            action()
        except Exception as exc:
            self.message.value = error_html(f"{what} failed:", exc)
            button.disabled = False
            return False
        return True

    def set_note(self, text):
        self.note = text
        with batched(self.message):
            self.message.value = note_html(text)

    # -- the progress protocol (views.watch) -----------------------------------------------------------------
    def start(self):
        """Show the view once per cell, with a display id so that every output of it can be re-sent when its
        handle settles: the text/plain part (what viewers without widgets show, e.g. a saved notebook on
        GitHub) then holds the final summary instead of the one from display time."""
        request = request_id()
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

    def update(self):
        self.refresh()

    def tick(self):
        """Between polls: the clock advances, from the last reading (no backend call)."""
        if self.snapshot is not None and not self.snapshot.terminal:
            with batched(self):
                self.render_clock(self.snapshot, self.clock())

    def finish(self):
        self.refresh()
        if self._final:
            POLLER.unregister(self)

    def detached(self):
        self.follow()

    def follow(self):
        """Keep updating from the kernel's poller thread until the handle settles."""
        if not self._final:
            POLLER.register(self)
        return self

    def settle_or_follow(self):
        if self.handle.done:
            self.finish()
        else:
            self.follow()

    def poll(self):
        """Called by the poller thread: cheap ticks, backend calls at the backend's pace."""
        if time.monotonic() - self._last_fetch >= describe_interval(self.handle):
            self._last_fetch = time.monotonic()
            self.refresh()
        else:
            self.tick()
        return self._final

    # -- showing ---------------------------------------------------------------------------------------------
    def show_status(self, shown_status):
        self.status = shown_status
        self.status_html.value = status_html(shown_status)

    def __repr__(self):
        return f"<{type(self).__name__} {self.handle.name}: {self.status}>"


class WaitingNote:
    """For a view that watch() waits on in the foreground (jobs, pipeline executions): while it waits, say how to
    get the cell back (buttons are handled once the kernel is free again: it runs one request at a time); Ctrl-C
    detaches, and the view keeps updating from the poller thread. `what` names the handle in those lines."""

    what = "job"
    stop_consequence = "R gets SIGTERM; the job ends as Stopped."
    _waiting = False
    _stopping = False

    def update(self):
        if not self._waiting:
            self._waiting = True
            self.set_note(f"waiting for the {self.what} in this cell · interrupt the kernel (■) to get the cell "
                          f"back: the {self.what} keeps running and this view keeps updating")
        self.refresh()

    def finish(self):
        self.refresh()
        if self._waiting:
            self._waiting = False
            self.set_note("")
        super().finish()

    def detached(self):
        self._waiting = False
        self.set_note(f"detached: the {self.what} keeps running and this view keeps updating; re-attach with "
                      f"%r_attach {esc(self.handle.name)}")
        self.follow()

    @locked
    def _ask_stop(self, _button=None):
        if self.handle.done:
            return
        self.stop_button.disabled = True
        self.confirm.ask(f"Stop <b>{esc(self.handle.name)}</b>? {self.stop_consequence}",
                         on_cancel=lambda: setattr(self.stop_button, "disabled", self.handle.done))

    def _do_stop(self):
        if not self.act(lambda: self.handle.stop(wait=False), "stop", self.stop_button):
            return
        self._stopping = True
        self.refresh()
        self.follow()

    def settled_controls(self, snap):
        """Once the handle has settled: no confirm prompt, no stop button, no leftover detach note."""
        self.stop_button.disabled = snap.terminal or self._stopping
        self.stop_button.layout.display = "none" if snap.terminal else ""
        if snap.terminal:
            self.confirm.close_prompt()
            if self.note and not self._waiting:
                self.note = ""
                self.message.value = ""


def elapsed_text(snap, now):
    verb = "took" if snap.terminal else "elapsed"
    return f"{verb} {fmt_duration(snap.elapsed(now))}"
