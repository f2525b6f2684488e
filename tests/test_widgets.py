"""Widgets asserted through their state, headless: real local R jobs, every state and button, the single
poller thread, hold_sync batching, the launch form, the text fallback, and nbclient saving widget state."""

import datetime
import html
import io
import os
import sys
import threading
import time

import pytest

pytest.importorskip("ipywidgets")

from sm_r_magic import api, views  # noqa: E402
from sm_r_magic.views import dashboard, endpoint, poller  # noqa: E402
from sm_r_magic.views.form import LaunchForm  # noqa: E402
from sm_r_magic.views import frontend as view_frontend  # noqa: E402
from sm_r_magic.views.endpoint import EndpointView  # noqa: E402
from sm_r_magic.views.job import JobView  # noqa: E402
from sm_r_magic.views.poller import POLLER  # noqa: E402

from .support.waiting import wait_for  # noqa: E402

FAST = 'cat("hello from R\\n")\nsaveRDS(1, file.path(sm_model_dir(), "model.rds"))'
FAILING = ('inner <- function(x) stop("boom: x was ", x)\n'
           'outer <- function() inner(42)\n'
           'cat("about to fail\\n")\nouter()')
LONG = 'cat("sleeping\\n")\nSys.sleep(30)'




def submit(code, **kwargs):
    kwargs.setdefault("backend", "local")
    return api.train(code, wait=False, progress="none", **kwargs)


@pytest.fixture
def quick_idle(monkeypatch):
    """The poller thread ends quickly once idle, so tests can see it go away."""
    monkeypatch.setattr(poller, "IDLE_EXIT_SECONDS", 0.3)


@pytest.fixture
def sent(monkeypatch):
    """Every comm message widgets send: [(widget, msg)]."""
    import ipywidgets

    messages = []
    original = ipywidgets.Widget._send

    def record(self, msg, buffers=None):
        messages.append((self, msg))
        return original(self, msg, buffers=buffers)

    monkeypatch.setattr(ipywidgets.Widget, "_send", record)
    return messages


# -- job widget states ---------------------------------------------------------------------------------
def test_completed_job_widget_shows_model_billable_metrics_and_timeline(settings, r_available):
    job = submit('cat("loss: 0.125\\n")\n' + FAST, metrics={"loss": r"loss: ([0-9.]+)"})
    view = views.watch(job, progress="widget")  # the foreground path: start/update/finish
    assert view is job
    w = JobView.for_handle(job)
    assert w.status == "Completed"
    assert 'data-status="Completed"' in w.status_html.value
    assert "var(--jp-success-color1" in w.status_html.value
    assert job.model_data and job.model_data in w.details.value
    assert "model.tar.gz" in w.details.value and "billable time" in w.details.value
    assert "none (local backend)" in w.details.value  # local jobs are not billed
    assert "loss <b>0.125</b>" in w.details.value
    assert "hello from R" in w.log_view.value
    for step in ("Starting", "Downloading", "Training", "Uploading"):
        assert step in w.timeline.value
    assert "took" in w.elapsed_html.value
    assert w.stop_button.disabled and w.stop_button.layout.display == "none"
    assert job.name in w.title.value and "training job" in w.title.value and "local" in w.title.value
    assert not POLLER.registered(w) and w.message.value == ""
    assert w.logs_button.layout.display == "none"  # two log lines: nothing more to show
    # the text/plain part of the display is the job's summary, never a widget repr
    assert w._repr_mimebundle_()["text/plain"] == job.summary()
    assert "application/vnd.jupyter.widget-view+json" in w._repr_mimebundle_()


def test_failed_job_widget_shows_r_error_and_traceback(settings, r_available):
    job = submit(FAILING)
    w = JobView.for_handle(job).follow()
    wait_for(lambda: w.status == "Failed", what="Failed")
    wait_for(lambda: not POLLER.registered(w), timeout=5, what="the final refresh")
    assert "var(--jp-error-color1" in w.status_html.value
    log = html.unescape(w.log_view.value)
    assert "about to fail" in log
    assert "Traceback" in job.failure_reason and "inner(42)" in job.failure_reason
    assert job.failure_reason in log  # the R error and its traceback, in full, as R printed them
    assert "with the R error and traceback" in w.log_view.value
    # ... and once: no second copy in an "R error" box
    assert html.unescape(w.details.value + w.log_view.value).count("boom: x was 42") == 1
    assert "R error" not in w.details.value
    assert w.stop_button.disabled


def with_overrides(job, **methods):
    """The same real job through a handle whose class overrides `methods` (what a test simulates)."""
    cls = type("Simulated" + type(job).__name__, (type(job),), methods)
    return cls(job.backend, job.kind, job.name)


def test_failure_reason_is_shown_once_and_kept_when_the_log_lacks_it(settings, r_available):
    job = submit(FAILING)
    wait_for(lambda: job.done, what="the job to fail")
    text = io.StringIO()
    view = views.TextView(type(job)(job.backend, job.kind, job.name), out=text)
    view.update()
    view.finish()
    assert text.getvalue().count("Traceback (innermost last)") == 1  # the log's copy only
    assert "about to fail" in text.getvalue()

    # on sagemaker the CloudWatch log may lack the R error: simulated by a log that reads as empty
    logless = with_overrides(job, poll_logs=lambda self: [])
    text = io.StringIO()
    views.TextView(logless, out=text).finish()
    assert job.failure_reason in text.getvalue()
    w = JobView(logless)
    assert "R error" in w.details.value and job.failure_reason in html.unescape(w.details.value)
    assert "no log lines yet" in w.log_view.value


def test_billable_time_shown_for_failed_and_stopped_jobs(settings, r_available):
    """SageMaker bills Failed and Stopped jobs too. The local backend never bills, so a real Failed and a
    real Stopped local job are read through handles whose description adds BillableTimeInSeconds (the
    only simulated part)."""
    from sm_r_magic.jobs import Job

    def billed(self, refresh=True):
        return {**Job.describe(self, refresh), "BillableTimeInSeconds": 42}

    failed, stopped = submit(FAILING), submit(LONG)
    wait_for(lambda: failed.done, what="the failing job")
    wait_for(lambda: "sleeping" in stopped.logs(), what="the long job to run")
    stopped.stop(wait=True)
    for job, status in ((failed, "Failed"), (stopped, "Stopped")):
        w = JobView(with_overrides(job, describe=billed))
        assert w.status == status
        assert "billable time" in w.details.value and "42s" in w.details.value
        assert "billable time" not in JobView(job).details.value  # nothing billed: no row


class FakeClock:
    """The waiting loop's time, advanced only by its own sleeps: a view's behaviour over many seconds, checked
    without waiting for them and whatever the machine's speed."""

    def __init__(self, start, on_sleep=None):
        self.start = start
        self.now = 0.0
        self.on_sleep = on_sleep

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(self)

    def utc(self):
        return self.start + datetime.timedelta(seconds=self.now)


def test_waiting_view_ticks_every_second_without_api_calls(settings, r_available, monkeypatch):
    """While watch() sleeps out a slow backend's polling interval (sagemaker: 5 s backing off to 30 s, here
    3 s), the view's elapsed time still advances every second, redrawn from the last reading: no backend call."""
    job = submit(LONG)
    try:
        wait_for(lambda: "sleeping" in job.logs(), what="the R code to run")
        stop_at = 9.0
        clock = FakeClock(job.snapshot().created,
                          on_sleep=lambda c: job.stop(wait=True) if c.now >= stop_at and not job.done else None)
        monkeypatch.setattr(job, "refresh_interval", lambda waited: 3.0)
        describes = []
        real_describe = job.backend.describe_job
        monkeypatch.setattr(job.backend, "describe_job", lambda *a: describes.append(a) or real_describe(*a))
        view = JobView(job, clock=clock.utc)
        labels = []  # (fake second, describe calls so far, label) at each change of the elapsed label
        view.elapsed_html.observe(lambda ch: labels.append((clock.now, len(describes), ch["new"])), names="value")
        views.watch_with(view, job, clock=clock)
        running = [(t, n, text) for t, n, text in labels if 0 < t < stop_at]
        assert [t for t, _, _ in running] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]  # every second
        for t, _, text in running:
            assert f"elapsed {t:.1f}s" in text, text
        for before, tick in zip(running, running[1:]):
            if tick[0] % 3:  # between two 3-second polls: redrawn without asking the backend
                assert tick[1] == before[1], (before, tick)
            else:  # a poll reads the job again
                assert tick[1] > before[1], (before, tick)
        assert job.status == "Stopped" and "took" in view.elapsed_html.value
    finally:
        if not job.done:
            job.stop(wait=True)


def test_stop_button_asks_for_confirmation_then_stops(settings, r_available):
    job = submit(LONG)
    w = JobView.for_handle(job).follow()
    wait_for(lambda: "sleeping" in w.log_view.value, what="the R code to run")
    assert w.status == "InProgress" and "var(--jp-brand-color1" in w.status_html.value
    assert "Training" in w.timeline.value and "…" in w.timeline.value
    first = w.elapsed_html.value
    wait_for(lambda: w.elapsed_html.value != first, timeout=5, what="elapsed to tick")

    w.stop_button.click()  # asks first
    assert w.confirm.is_open and w.stop_button.disabled
    assert job.name in w.confirm.prompt.value
    time.sleep(0.3)
    assert job.status == "InProgress"  # nothing stopped yet
    w.cancel_button.click()
    assert not w.confirm.is_open and not w.stop_button.disabled

    w.stop_button.click()
    w.confirm_button.click()
    assert not w.confirm.is_open
    assert w.status in ("Stopping", "Stopped")
    wait_for(lambda: w.status == "Stopped", timeout=20, what="Stopped")
    assert job.status == "Stopped"
    assert "var(--jp-warn-color1" in w.status_html.value
    assert w.stop_button.disabled
    wait_for(lambda: not POLLER.registered(w), timeout=5, what="the poller to drop the ended job")


def test_waiting_hint_and_ctrl_c_detach_keep_the_view_updating(settings, r_available):
    job = submit(LONG)
    w = JobView.for_handle(job)
    hints = []

    class Interrupting(views.Clock):
        calls = 0

        @classmethod
        def sleep(cls, seconds):
            hints.append(w.message.value)
            cls.calls += 1
            if cls.calls >= 2:
                raise KeyboardInterrupt
            time.sleep(seconds)

    try:
        assert views.watch(job, progress="widget", clock=Interrupting) is job
        assert "waiting for the job in this cell" in hints[0]
        assert "detached" in w.message.value and job.name in w.message.value
        assert POLLER.registered(w) and job.status == "InProgress"
        wait_for(lambda: "sleeping" in w.log_view.value, what="the poller to show the R output")
        job.stop(wait=False)
        wait_for(lambda: w.status == "Stopped", what="Stopped")
        assert w.message.value == ""
    finally:
        if not job.done:
            job.stop(wait=True)


def test_log_tail_and_show_all_toggle(settings, r_available):
    job = submit('for (i in 1:50) cat(sprintf("line %02d\\n", i))')
    w = JobView.for_handle(job)
    views.watch(job, progress="widget")
    assert "line 50" in w.log_view.value and "line 36" in w.log_view.value
    assert "line 35" not in w.log_view.value
    assert "last 15 of 50 lines" in w.log_view.value
    w.logs_button.value = True
    assert "line 01" in w.log_view.value and "last 15" not in w.log_view.value
    assert w.logs_button.description == "Show last 15 lines"
    w.logs_button.value = False
    assert "line 01" not in w.log_view.value and w.logs_button.description == "Show all logs"


def test_one_poller_thread_for_many_jobs_and_it_stops_when_they_end(settings, r_available, quick_idle):
    jobs = [submit('Sys.sleep(1)\ncat("done\\n")') for _ in range(3)]
    views = [JobView.for_handle(j).follow() for j in jobs]
    pollers = [t for t in threading.enumerate() if t.name == "sm-r-magic-poller"]
    assert len(pollers) == 1
    wait_for(lambda: all(v.status == "Completed" for v in views), what="all Completed")
    wait_for(lambda: not POLLER.items, timeout=5, what="the poller to drop ended jobs")
    wait_for(lambda: not any(t.name == "sm-r-magic-poller" for t in threading.enumerate()), timeout=5,
             what="the idle poller thread to end")


def test_refresh_batches_updates_with_hold_sync(settings, r_available, sent):
    job = submit(LONG)
    w = JobView.for_handle(job)
    try:
        wait_for(lambda: (w.refresh() or "sleeping" in w.log_view.value), what="log line")
        time.sleep(1.1)  # elapsed and timeline durations change
        sent.clear()
        w.refresh()
        updates = [(id(widget), msg) for widget, msg in sent if msg.get("method") == "update"]
        assert updates, "a refresh of a running job sends its changes"
        per_widget = [wid for wid, _ in updates]
        assert len(per_widget) == len(set(per_widget)), "one message per changed widget"
        sent.clear()
        w.refresh(fetch=False)  # nothing changed within the same second: nothing sent
        assert len([m for _, m in sent if m.get("method") == "update"]) <= 2
    finally:
        job.stop(wait=True)


def test_kernel_thread_parent_sets_and_resets_thread_local_parent(monkeypatch):
    import contextvars

    calls = []

    class Kernel:
        _shell_parent = contextvars.ContextVar("shell_parent")

    class Shell:
        kernel = Kernel()

        def get_parent(self):
            return {"header": {"msg_id": "cell-7"}}

        def set_thread_parent(self, parent):
            calls.append(("set", parent["header"]["msg_id"]))
            return "token"

        def reset_thread_parent(self, token):
            calls.append(("reset", token))

    monkeypatch.setattr(poller, "_shell", lambda: Shell())
    seen = {}

    def worker():
        with poller.kernel_thread_parent():
            seen["inside"] = Kernel._shell_parent.get(None)
        seen["after"] = Kernel._shell_parent.get(None)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"inside": {"header": {"msg_id": "cell-7"}}, "after": None}
    assert calls == [("set", "cell-7"), ("reset", "token")]
    with poller.kernel_thread_parent():  # the main thread is left alone
        pass
    assert len(calls) == 2


# -- endpoint widget -----------------------------------------------------------------------------------
EXAMPLES = {"text/csv": "wt,hp\n2.62,110\n", "application/json": '[{"wt":2.62,"hp":110}]'}


class FakeEndpointBackend:
    """describe/invoke/delete of one endpoint: Creating for `creating_for` seconds, then InService."""

    name = "local"

    def __init__(self, creating_for=0.6):
        self.ready_at = time.monotonic() + creating_for
        self.deleted = False
        self.invocations = []
        self.created = datetime.datetime.now(datetime.timezone.utc)

    def describe_endpoint(self, name):
        status = "Deleted" if self.deleted else ("InService" if time.monotonic() >= self.ready_at else "Creating")
        return {"EndpointName": name, "EndpointStatus": status, "CreationTime": self.created,
                "LocalUrl": "http://127.0.0.1:8765/invocations"}

    def invoke_endpoint(self, name, body, content_type, accept):
        from sm_r_magic.predictor import InvocationError

        self.invocations.append((body, content_type, accept))
        if b"bad" in body:
            raise InvocationError(500, "Error in predict(): bad input\n")
        return b'{"predictions": [21.5]}', "application/json"

    def endpoint_example(self, name, content_type):
        return EXAMPLES.get(content_type)

    def read_endpoint_logs(self, name, cursor=None):
        return (["listening on 127.0.0.1:8765"], 1) if not cursor else ([], cursor)

    def delete_endpoint(self, name):
        self.deleted = True


@pytest.fixture
def predictor():
    pytest.importorskip("sm_r_magic.predictor")
    from sm_r_magic.predictor import Predictor

    return Predictor(FakeEndpointBackend(), "mtcars-endpoint")


def test_endpoint_widget_creating_in_service_try_it_and_delete(predictor):
    w = EndpointView(predictor)
    assert w.status == "Creating" and "var(--jp-brand-color1" in w.status_html.value
    assert w.send_button.disabled
    assert "mtcars-endpoint" in w.details.value and "http://127.0.0.1:8765/invocations" in w.details.value
    w.follow()
    wait_for(lambda: w.status == "InService", what="InService")
    assert "var(--jp-success-color1" in w.status_html.value and not w.send_button.disabled
    wait_for(lambda: not POLLER.registered(w), timeout=5, what="the poller to drop the endpoint")

    w.content_type.value = "application/json"
    assert w.payload.value == EXAMPLES["application/json"]  # the model's own example follows the type
    w.payload.value = '{"wt": [2.5]}'
    w.send_button.click()
    body, ctype, accept = predictor.backend.invocations[-1]
    assert (body, ctype, accept) == (b'{"wt": [2.5]}', "application/json", "application/json")
    assert "21.5" in w.response.value and "application/json" in w.response.value
    assert w.last_response.startswith("{")

    w.payload.value = "bad"
    w.content_type.value = "text/csv"
    w.send_button.click()
    assert "error 500" in w.response.value and "bad input" in w.response.value

    w.logs_button.value = True
    assert "listening on 127.0.0.1:8765" in w.log_view.value
    w.logs_button.value = False

    w.delete_button.click()
    assert w.confirm.is_open and not predictor.backend.deleted
    w.confirm_button.click()
    assert predictor.backend.deleted
    wait_for(lambda: w.status == "Deleted", what="Deleted")
    assert w.send_button.disabled and w.delete_button.disabled
    assert w.try_it.layout.display == "none"


INFERENCE = 'model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))'


def train_fit(shell):
    result = shell.run_cell(f"%%r_train --backend local --name fit\n{FAST}")
    assert result.error_in_exec is None, result.error_in_exec
    return shell.user_ns["fit"]


def test_deploy_async_shows_the_endpoint_widget_and_stores_the_predictor(shell, r_available):
    shell.run_line_magic("config", 'RMagic.progress = "widget"')  # the notebook's widget path, headless
    train_fit(shell)
    result = shell.run_cell(f"%%r_deploy --backend local --model fit --name async-ep --async --as ep\n{INFERENCE}")
    predictor = shell.user_ns.get("ep")
    try:
        assert result.error_in_exec is None, result.error_in_exec
        assert predictor is not None and predictor.kind == "endpoint"
        view = EndpointView.views[("local", "endpoint", predictor.endpoint_name)]
        assert isinstance(view, EndpointView) and POLLER.registered(view)
        wait_for(lambda: view.status == "InService", timeout=30, what="InService")
    finally:
        if predictor is not None:
            predictor.delete()


def test_deploy_form_has_endpoint_fields_and_deploys(shell, r_available, frontend):
    import ipywidgets

    fit = train_fit(shell)
    result = shell.run_cell("%%r_deploy --form --backend local --model fit --name form-ep "
                            f"--instance-type ml.t2.medium\n{INFERENCE}")
    assert result.error_in_exec is None, result.error_in_exec
    form = result.result
    assert isinstance(form, LaunchForm) and form.kind == "endpoint"
    inputs = [c for c in form.children if isinstance(c, ipywidgets.ValueWidget) and not isinstance(c, ipywidgets.HTML)]
    assert inputs == [form.backend, form.name, form.instance_type, form.instance_count, form.model]
    assert form.model.value == fit.name and form.instance_type.value == "ml.t2.medium"
    assert form.launch_button.description == "Deploy" and "Deploy an endpoint" in form.children[0].value
    assert form.values()["model"] is fit and "hyperparameters" not in form.values()
    form.launch_button.click()
    predictor = form.launched[-1][1]
    try:
        assert predictor.kind == "endpoint"
        (view,) = form.runs.children
        assert isinstance(view, EndpointView)
        wait_for(lambda: view.status == "InService", timeout=30, what="InService")
        wait_for(lambda: not POLLER.registered(form), timeout=5, what="the form to stop polling")
        assert 'data-status="InService"' in form.results.value
    finally:
        predictor.delete()


def test_form_without_a_widget_frontend_is_a_usage_error(shell):
    for magic in ("r_train", "r_processing", "r_deploy"):
        error = shell.run_cell(f'%%{magic} --form --backend local\ncat("x\\n")').error_in_exec
        assert type(error).__name__ == "UsageError" and "\n" not in str(error), (magic, error)
        assert "notebook with widgets" in str(error) and "drop --form" in str(error)


# -- dashboard ---------------------------------------------------------------------------------------
def test_dashboard_rows_and_buttons(settings, r_available, predictor):
    done = submit(FAST)
    running = submit(LONG)
    wait_for(lambda: done.done, what="the fast job")
    board = dashboard.JobsDashboard([done, running], [predictor])
    try:
        assert len(board.job_rows) == 2 and len(board.endpoint_rows) == 1
        names = [getattr(c, "value", "") for c in board.table.children]
        assert any(done.name in n for n in names) and any(running.name in n for n in names)
        assert any("mtcars-endpoint" in n for n in names)
        row_done, row_running = board.job_rows
        assert 'data-status="Completed"' in row_done.status.value
        assert row_done.action_button.disabled
        assert 'data-status="InProgress"' in row_running.status.value

        row_done.attach_button.click()
        assert isinstance(board.detail.children[0], JobView)
        assert board.detail.children[0].job.name == done.name
        row_done.logs_button.click()
        assert "hello from R" in board.detail.children[0].value
        board.close_detail.click()
        assert board.detail.children == ()

        row_running.action_button.click()
        assert row_running.confirm.is_open and running.status == "InProgress"
        row_running.confirm.confirm_button.click()
        wait_for(lambda: 'data-status="Stopped"' in row_running.status.value, timeout=20, what="row Stopped")
        assert running.status == "Stopped"

        endpoint_row = board.endpoint_rows[0]
        endpoint_row.attach_button.click()
        assert isinstance(board.detail.children[0], EndpointView)
        endpoint_row.action_button.click()
        endpoint_row.confirm.confirm_button.click()
        assert predictor.backend.deleted
        assert 'data-status="Deleted"' in endpoint_row.status.value
    finally:
        if not running.done:
            running.stop(wait=True)


def test_dashboard_from_show_jobs_when_a_frontend_exists(settings, r_available, monkeypatch):
    job = submit(FAST)
    wait_for(lambda: job.done, what="job")
    monkeypatch.setattr(views, "widgets_wanted", lambda p: True)
    board = views.show_jobs([job])
    assert isinstance(board, dashboard.JobsDashboard) and board.jobs == [job]
    empty = dashboard.JobsDashboard([])
    assert "no jobs" in empty.children[0].value


def test_r_jobs_lists_the_backends_endpoints_with_their_duration(shell, r_available, capfd, monkeypatch):
    from sm_r_magic.jobs import SESSION

    train_fit(shell)
    result = shell.run_cell(f"%%r_deploy --backend local --model fit --name listed-ep --as ep\n{INFERENCE}")
    predictor = shell.user_ns.get("ep")
    try:
        assert result.error_in_exec is None, result.error_in_exec
        SESSION.remove_endpoint(predictor)  # as if another kernel had started it: only the backend knows it
        capfd.readouterr()
        shell.run_line_magic("r_jobs", "")
        rows = [line.split() for line in capfd.readouterr().out.splitlines()]
        assert [predictor.endpoint_name, "endpoint", "local", "InService"] in [row[:4] for row in rows]
        shell.run_line_magic("r_jobs", "--backend docker")
        assert predictor.endpoint_name not in capfd.readouterr().out

        monkeypatch.setattr(views, "widgets_wanted", lambda p: True)
        board = shell.run_line_magic("r_jobs", "")
        assert [p.endpoint_name for p in board.endpoints] == [predictor.endpoint_name]
        duration = board.endpoint_rows[0].duration.value
        assert "–" not in duration and any(ch.isdigit() for ch in duration)
        assert shell.run_line_magic("r_jobs", "--backend docker").endpoints == []
    finally:
        predictor.delete()


def test_r_jobs_lists_the_most_recent_jobs(shell, r_available, capfd, monkeypatch):
    from sm_r_magic.jobs import SESSION

    monkeypatch.setattr(SESSION, "jobs", [])  # only this test's jobs (earlier tests ran theirs elsewhere)
    assert views.RECENT_JOBS == 20
    names = []
    for i in range(3):
        assert shell.run_cell(f'%%r_processing --backend local --name cap{i}\ncat("{i}\\n")').error_in_exec is None
        names.append(shell.user_ns[f"cap{i}"].name)
    monkeypatch.setattr(views, "RECENT_JOBS", 2)
    capfd.readouterr()
    shell.run_line_magic("r_jobs", "")
    out = capfd.readouterr().out
    assert names[0] not in out and names[1] in out and names[2] in out and "1 older job not shown" in out
    shell.run_line_magic("r_jobs", "--all")
    out = capfd.readouterr().out
    assert all(name in out for name in names) and "older" not in out
    shell.run_line_magic("r_jobs", "--limit 1")
    out = capfd.readouterr().out
    assert names[1] not in out and names[2] in out and "2 older jobs not shown" in out

    monkeypatch.setattr(views, "widgets_wanted", lambda p: True)
    board = shell.run_line_magic("r_jobs", "--limit 1")
    assert [row.handle.name for row in board.job_rows] == [names[2]]
    assert board.older_note in board.children and "2 older jobs not shown" in board.older_note.value


# -- launch form ------------------------------------------------------------------------------------
FORM_CELL = ('alpha <- sm_hp("alpha", 1)\n'
             'Sys.sleep(0.5)\n'
             'cat(sprintf("loss: %.3f\\n", 1 / alpha))\n'
             'saveRDS(alpha, file.path(sm_model_dir(), "alpha.rds"))')


@pytest.fixture
def frontend(monkeypatch):
    """As in a notebook: a widget frontend exists."""
    monkeypatch.setattr(view_frontend, "has_widget_frontend", lambda: True)


def test_launch_form_two_variants_and_comparison_table(shell, r_available, frontend):
    line = '--form --backend local --name sweep --hp alpha=1 --metric loss="loss: ([0-9.]+)" --instance-type ml.c5.xlarge'
    result = shell.run_cell(f"%%r_train {line}\n{FORM_CELL}")
    assert result.error_in_exec is None, result.error_in_exec
    form = result.result
    assert isinstance(form, LaunchForm)
    # prefilled from the line and the config
    assert form.backend.value == "local" and form.name.value == "sweep"
    assert form.instance_type.value == "ml.c5.xlarge" and form.instance_count.value == 1
    assert form.hyperparameters.value == "alpha=1"
    assert "loss" in form.children[0].value

    started = time.monotonic()
    form.launch_button.click()
    first = form.launched[-1][1]
    assert time.monotonic() - started < 5 and first.status == "InProgress"  # did not wait for the job
    form.hyperparameters.value = "alpha=4\n# a comment line\n"
    form.launch_button.click()
    second = form.launched[-1][1]
    assert first.name != second.name and len(form.launched) == 2
    assert [type(v) for v in form.runs.children] == [JobView, JobView]

    wait_for(lambda: first.done and second.done, what="both variants")
    wait_for(lambda: not POLLER.registered(form), timeout=5, what="the table's final refresh")
    rows = form.rows()
    assert [r["hyperparameters"] for r in rows] == [{"alpha": 1}, {"alpha": 4}]
    assert [r["status"] for r in rows] == ["Completed", "Completed"]
    assert [r["metrics"] for r in rows] == [{"loss": 1.0}, {"loss": 0.25}]
    assert first.hyperparameters == {"alpha": 1} and second.hyperparameters == {"alpha": 4}
    table = form.results.value
    assert first.name in table and second.name in table and ">0.25<" in table and ">1<" in table
    assert table.count('data-status="Completed"') == 2

    form.hyperparameters.value = "not a pair"
    form.launch_button.click()
    assert len(form.launched) == 2 and "malformed --hp" in form.message.value


def test_launch_form_shows_submit_errors(settings):
    def submit_fails(**overrides):
        from sm_r_magic.errors import SmRMagicError

        assert overrides["wait"] is False
        raise SmRMagicError("the cell has no R code")

    form = views.launch_form("processing", {"inputs": {"raw": "data/"}}, submit_fails)
    assert form.data.description == "Inputs" and form.data.value == "raw=data/"
    assert form.values()["inputs"] == {"raw": "data/"}
    form.launch_button.click()
    assert "launch failed" in form.message.value and "no R code" in form.message.value


# -- no widget frontend: text ----------------------------------------------------------------------
def test_text_fallback_without_a_frontend(shell, r_available, capfd):
    from sm_r_magic.views.frontend import has_widget_frontend

    assert not has_widget_frontend()  # an InteractiveShell without a kernel
    shell.run_cell('%%r_train --backend local --name texty\ncat("text path\\n")')
    shell.run_cell("%r_jobs")
    out = capfd.readouterr().out
    assert "[sm-r-magic] training job texty-" in out and "text path" in out
    assert "Completed" in out
    for raw in ("VBox(", "HTML(", "JobWidget", "JobsDashboard", "widget-view", "model_id"):
        assert raw not in out
    job = shell.user_ns["texty"]
    assert views.show_async(job) is None  # nothing shown, nothing printed
    assert capfd.readouterr().out == ""


def test_text_mode_prints_each_summary_and_r_traceback_once(shell, r_available, capfd):
    shell.run_cell('%%r_train --backend local --name once\ncat("fine\\n")')
    out = capfd.readouterr().out
    assert out.count(shell.user_ns["once"].summary()) == 1  # the progress line, not again for the result
    error = shell.run_cell(f"%%r_train --backend local --name twice\n{FAILING}").error_in_exec
    assert type(error).__name__ == "JobFailed"
    out = capfd.readouterr().out
    failed = shell.user_ns["twice"]
    assert out.count(failed.summary()) == 1
    # once, as R printed it in the log; the error the cell raises points at it and still carries it
    assert out.count("Traceback (innermost last)") == 1
    assert out.index(failed.failure_reason) < out.index(failed.summary()) < out.index("the R error is shown above")
    assert failed.failure_reason in str(error)


def test_plain_python_uses_text(tmp_path, r_available):
    import subprocess

    code = ("import sm_r_magic, sys\n"
            "from sm_r_magic.views.frontend import has_widget_frontend\n"
            "assert not has_widget_frontend()\n"
            "sm_r_magic.train('cat(\"plain\\\\n\")', backend='local')\n"
            "assert 'ipywidgets' not in sys.modules\n")
    env = dict(os.environ, SM_R_MAGIC_LOCAL_ROOT=str(tmp_path / "root"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "[sm-r-magic]" in out.stdout and "plain" in out.stdout and "VBox" not in out.stdout


# -- nbclient: the saved notebook has the final widget state ---------------------------------------------
def test_nbclient_saves_final_widget_state(tmp_path, local_root, r_available):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext sm_r_magic"),
        nbformat.v4.new_code_cell('%%r_train --backend local --name nbsync\ncat("loss: 0.5\\n")\nSys.sleep(1)\n'
                                  'saveRDS(1, file.path(sm_model_dir(), "m.rds"))'),
        nbformat.v4.new_code_cell('%%r_train --backend local --name nbasync --async\nSys.sleep(1.5)\ncat("end\\n")'),
        nbformat.v4.new_code_cell("import time\nwhile not nbasync.done:\n    time.sleep(0.1)\ntime.sleep(1.5)"),
        # what the API does for wait=False (views.show_async), then the handle as the cell's result
        nbformat.v4.new_code_cell("import sm_r_magic\nfrom sm_r_magic import views\n"
                                  "job = sm_r_magic.train('cat(\"api\\\\n\")', backend='local', wait=False)\n"
                                  "views.show_async(job)\njob"),
    ]
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, str(path))
    saved = nbformat.read(str(path), as_version=4)
    state = saved.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]

    def view_ids(cell):
        return [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for o in cell.outputs
                if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]

    def texts_under(model_id):
        model = state[model_id]["state"]
        found = [model.get("value")] if isinstance(model.get("value"), str) else []
        for child in model.get("children", []):
            found += texts_under(child.replace("IPY_MODEL_", ""))
        return found

    sync_views, async_views = view_ids(saved.cells[1]), view_ids(saved.cells[2])
    assert len(sync_views) == 1 and len(async_views) == 1  # shown once per cell (watch + result)
    assert len(view_ids(saved.cells[4])) == 1  # show_async + the returned handle: one view
    sync_text = "\n".join(texts_under(sync_views[0]))
    assert 'data-status="Completed"' in sync_text and "model.tar.gz" in sync_text and "loss: 0.5" in sync_text
    assert "waiting for the job" not in sync_text
    # updated from the poller thread while the next cell ran: nbclient recorded it too
    async_text = "\n".join(texts_under(async_views[0]))
    assert 'data-status="Completed"' in async_text and "end" in async_text


def test_nbclient_saves_the_final_text_of_each_view(tmp_path, local_root, r_available):
    """Viewers without widgets (GitHub, nbconvert to text) show the text/plain part of a widget output: it
    must be the job's final summary, not the one from when the widget was first displayed."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext sm_r_magic"),
        nbformat.v4.new_code_cell('%%r_train --backend local --name textsync\nSys.sleep(1)\ncat("done\\n")'),
        nbformat.v4.new_code_cell('%%r_train --backend local --name textasync --async\nSys.sleep(1)'),
        nbformat.v4.new_code_cell("import time\nwhile not textasync.done:\n    time.sleep(0.1)\ntime.sleep(1.5)"),
    ]
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    for cell in nb.cells[1:3]:
        (text,) = [o["data"]["text/plain"] for o in cell.outputs
                   if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert ": Completed · in " in text and "so far" not in text, text
