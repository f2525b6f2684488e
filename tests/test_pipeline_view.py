"""The pipeline execution's views, asserted headless through their state: real local executions (real R jobs,
started with the local backend's start_pipeline, run by the detached runner of backends/folder_executions.py) drawn as
a step graph widget and as text lines, and their rows in %r_jobs' dashboard and text table.
Every wait is for a condition, bounded generously; the clock that ticks is a controlled one."""

import html
import io
import os
import time
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("ipywidgets")

import sm_r_magic  # noqa: E402
from sm_r_magic import config, views  # noqa: E402
from sm_r_magic.backends import get_backend  # noqa: E402
from sm_r_magic.workflow import definition as d  # noqa: E402
from sm_r_magic.backends import folder_executions as ex  # noqa: E402
from sm_r_magic.views import dashboard  # noqa: E402
from sm_r_magic.views.html import STATUS_COLORS  # noqa: E402
from sm_r_magic.views.job import JobView  # noqa: E402
from sm_r_magic.views.pipeline import PipelineView  # noqa: E402
from sm_r_magic.views.poller import POLLER  # noqa: E402
from sm_r_magic.views.step_graph import GREY  # noqa: E402

from .support.rlang import r_output  # noqa: E402
from .support.waiting import wait_for  # noqa: E402
from .test_pipeline_local import CONDITION, EVALUATE, FIT, PREP  # noqa: E402
from .test_widgets import FakeClock  # noqa: E402

WAIT = 180  # seconds: generous bounds for a busy machine
THRESHOLD_MET, THRESHOLD_MISSED = 10, 0.001
# a processing step that waits until the test opens its gate (a file in a folder its input names)
GATED = """
gate <- readLines(file.path(sm_input("gate"), "gate.txt"))
cat("waiting at the gate\\n")
while (!file.exists(file.path(gate, "open"))) Sys.sleep(0.05)
cat("through the gate\\n")
"""


@pytest.fixture(scope="module")
def flow(tmp_path_factory, r_available):
    """The issue's three cells run once (real local jobs) under one local root for the module; each test runs
    its executions under its own pipeline name (the cache is per pipeline)."""
    tmp = tmp_path_factory.mktemp("pview")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SM_R_MAGIC_LOCAL_ROOT", str(tmp / "root"))
        settings = config.RMagic()
        patch.setattr(config, "_current", settings)
        csv = tmp / "data" / "mtcars.csv"
        csv.parent.mkdir()
        r_output(f'write.csv(mtcars, "{csv}", row.names = FALSE)')
        prep = sm_r_magic.processing(PREP, name="prep", inputs={"raw": str(csv)},
                                     outputs={"train": None, "test": None}, progress="none")
        fit = sm_r_magic.train(FIT, name="fit", channels={"train": prep.outputs["train"]},
                               hyperparameters={"formula": "mpg ~ wt + hp"}, progress="none")
        ev = sm_r_magic.processing(EVALUATE, name="evaluate", outputs={"evaluation": None}, progress="none",
                                   inputs={"model": fit.model_data, "test": prep.outputs["test"]})
        assert [c.status for c in (prep, fit, ev)] == ["Completed"] * 3
        gate = tmp / "gate"
        gate.mkdir()
        (tmp / "gate-cell").mkdir()
        (tmp / "gate-cell" / "gate.txt").write_text(f"{gate}\n")
        (gate / "open").touch()  # the cell itself passes at once
        gated = sm_r_magic.processing(GATED, name="gated", inputs={"gate": str(tmp / "gate-cell" / "gate.txt")},
                                      progress="none")
        assert gated.status == "Completed"
        yield Flow(settings, tmp, [prep, fit, ev], gated)
        for folder in (tmp / "root" / "pipelines").glob("*/executions/*"):  # whatever a failed test left running
            ex.stop(ex.ExecutionFolder(str(folder)))
        for job in get_backend("local", settings).list_jobs():
            if job.status == "InProgress":
                job.stop(wait=True, timeout=60)


class Flow:
    def __init__(self, settings, tmp, cells, gated):
        self.settings, self.tmp, self.cells, self.gated = settings, tmp, cells, gated

    def definition(self, threshold=THRESHOLD_MET, **kwargs):
        return d.build(self.cells, condition=CONDITION.format(threshold), register="view-models",
                       fail_message="RMSE above the threshold", **kwargs)

    def start(self, pipeline, definition, parameters=None):
        return get_backend("local", self.settings).start_pipeline(pipeline, definition, parameters)

    def run(self, pipeline, definition, parameters=None, wait=True):
        execution = self.start(pipeline, definition, parameters)
        if wait:
            wait_for(lambda: execution.done, timeout=WAIT, what=f"execution {execution.name} to end")
        return execution

    def gated_run(self, pipeline):
        """An execution whose one step waits at a closed gate; returns it and the gate's folder."""
        gate, names_it = self.tmp / f"gate-{pipeline}", self.tmp / f"gate-{pipeline}-input" / "gate.txt"
        gate.mkdir()
        names_it.parent.mkdir()
        names_it.write_text(f"{gate}\n")  # the same file name as the cell's input: the code reads gate.txt
        execution = self.run(pipeline, d.build([self.gated]), {"gate": str(names_it)}, wait=False)
        wait_for(lambda: "waiting at the gate" in execution.logs(), timeout=WAIT, what="the step's R code to run")
        return execution, gate


def svg_of(view):
    return ET.fromstring(view.graph_html.value)


def nodes(view):
    """step name -> the <g class="smr-node"> drawn for it."""
    return {g.get("data-step"): g for g in svg_of(view).iter("{http://www.w3.org/2000/svg}g")
            if g.get("class") == "smr-node"}


def drawn_arrows(view):
    return [(g.get("data-from"), g.get("data-to"), g.get("data-label"), g.get("data-taken"),
             "".join(t.text or "" for t in g.iter("{http://www.w3.org/2000/svg}text")))
            for g in svg_of(view).iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "smr-arrow"]


def stroke(node):
    return node.find("{http://www.w3.org/2000/svg}rect").get("style").split("stroke: ")[1].split(";")[0]


def all_text(widget):
    """Every HTML text shown under `widget` (what a reader sees), unescaped."""
    value = getattr(widget, "value", None)
    found = [html.unescape(value)] if isinstance(value, str) else []
    found += [all_text(child) for child in getattr(widget, "children", ()) or ()]
    return "\n".join(found)


def test_the_step_graph_of_the_four_step_flow_with_condition_register_and_cache(flow):
    first = flow.run("graph", flow.definition(cache="1h"))
    assert first.status == "Succeeded", first.failure_reason
    view = PipelineView.for_handle(first)
    view.finish()
    assert views.widget_view(first) is view and isinstance(views.make_view(first, "widget"), PipelineView)

    # boxes in layers left to right; the arrows a longer path implies (fit -> register, ...) are left out
    assert view.step_graph.layers == {"prep": 0, "fit": 1, "evaluate": 2, "condition": 3, "register": 4, "fail": 4}
    drawn = nodes(view)
    assert list(drawn) == ["prep", "fit", "evaluate", "condition", "register", "fail"]
    assert drawn_arrows(view) == [("prep", "fit", "", "", ""), ("fit", "evaluate", "", "", ""),
                                  ("evaluate", "condition", "", "", ""),
                                  ("condition", "register", "if", "true", "if ✓"),
                                  ("condition", "fail", "else", "false", "else ✗")]
    assert [(a.source, a.target, a.label, a.taken) for a in view.arrows][-2:] == [
        ("condition", "register", "if", True), ("condition", "fail", "else", False)]
    # colours by status; the branch not taken greyed and "not run"
    for name in ("prep", "fit", "evaluate", "condition", "register"):
        assert drawn[name].get("data-status") == "Succeeded" and stroke(drawn[name]) == STATUS_COLORS["Succeeded"]
    assert drawn["fail"].get("data-status") == "NotRun" and stroke(drawn["fail"]) == GREY
    assert "opacity" in drawn["fail"].get("style") and "not run" in ET.tostring(drawn["fail"], "unicode")
    assert "True → if" in ET.tostring(drawn["condition"], "unicode")
    assert "training" in ET.tostring(drawn["fit"], "unicode")
    assert not any(s.cached for s in view.states.values())
    # the execution's status, time and parameters
    assert view.status == "Succeeded" and STATUS_COLORS["Succeeded"] in view.status_html.value
    assert "took" in view.elapsed_html.value and first.name in view.title.value and "graph" in view.title.value
    assert "raw" in view.parameters_html.value and str(flow.tmp / "data" / "mtcars.csv") in view.parameters_html.value
    assert view.failure_html.value == "" and view.stop_button.layout.display == "none"

    # a button per job step opens that step's job view below the graph; again: closes it
    assert list(view.step_buttons) == ["prep", "fit", "evaluate"]
    assert not any(b.disabled for b in view.step_buttons.values())
    fit_job = first.step_job("fit")
    view.step_buttons["fit"].click()
    shown = view.job_box.children[0]
    assert isinstance(shown, JobView) and shown.job.name == fit_job.name and shown.status == "Completed"
    assert view.open_step == "fit" and view.step_buttons["fit"].button_style == "info"
    view.step_buttons["prep"].click()
    assert view.job_box.children[0].job.name == first.step_job("prep").name
    view.step_buttons["prep"].click()
    assert view.job_box.children == () and view.open_step is None

    # the same steps again with a threshold the model misses: cached jobs, the else branch, the Fail step
    second = flow.run("graph", flow.definition(THRESHOLD_MISSED, cache="1h"))
    assert second.status == "Failed"
    view = PipelineView.for_handle(second)
    view.finish()
    drawn = nodes(view)
    for name in ("prep", "fit", "evaluate"):
        assert view.states[name].cached and drawn[name].get("data-cached") == "true"
        assert "cached" in ET.tostring(drawn[name], "unicode")
    assert drawn["condition"].get("data-cached") == "false"
    assert drawn_arrows(view)[-2:] == [("condition", "register", "if", "false", "if ✗"),
                                       ("condition", "fail", "else", "true", "else ✓")]
    assert drawn["register"].get("data-status") == "NotRun" and stroke(drawn["register"]) == GREY
    assert drawn["fail"].get("data-status") == "Failed" and stroke(drawn["fail"]) == STATUS_COLORS["Failed"]
    assert view.status == "Failed" and STATUS_COLORS["Failed"] in view.status_html.value
    # the reason once (the execution's FailureReason is the same message: not shown twice)
    assert "step fail failed" in view.failure_html.value
    assert all_text(view).count("RMSE above the threshold") == 1 and view.reason_shown
    view.step_buttons["fit"].click()  # a cached step opens the earlier execution's job
    assert view.job_box.children[0].job.name == fit_job.name


def test_a_failed_step_shows_its_r_error_once_and_later_steps_never_run(flow):
    no_mpg = flow.tmp / "iris" / "mtcars.csv"
    no_mpg.parent.mkdir()
    r_output(f'write.csv(iris, "{no_mpg}", row.names = FALSE)')
    execution = flow.run("failing", d.build(flow.cells[:2], register="failing-models"), {"raw": str(no_mpg)})
    assert execution.status == "Failed"
    view = PipelineView.for_handle(execution)
    view.finish()
    drawn = nodes(view)
    assert drawn["prep"].get("data-status") == "Succeeded"
    assert drawn["fit"].get("data-status") == "Failed" and stroke(drawn["fit"]) == STATUS_COLORS["Failed"]
    assert drawn["register"].get("data-status") == "NotRun"
    assert "step fit failed" in view.failure_html.value
    assert "object 'mpg' not found" in html.unescape(view.failure_html.value)
    assert "Traceback" in html.unescape(view.failure_html.value)  # the R error as the step's job recorded it
    assert all_text(view).count("object 'mpg' not found") == 1  # not again from the execution's FailureReason
    assert view.reason_shown and not view.step_buttons["fit"].disabled


def test_stop_asks_first_then_stops_the_running_step(flow):
    execution, _gate = flow.gated_run("stopping")
    view = PipelineView.for_handle(execution).follow()
    wait_for(lambda: view.states["gated"].status == "Executing", timeout=WAIT, what="the step to run")
    assert view.status == "Executing" and STATUS_COLORS["Executing"] in view.status_html.value
    assert "Executing" in ET.tostring(nodes(view)["gated"], "unicode") and "…" in view.graph_html.value
    stop_file = os.path.join(execution.describe()["LocalExecutionFolder"], "stop-requested")

    view.stop_button.click()  # asks first: nothing is stopped
    assert view.confirm.is_open and view.stop_button.disabled and execution.name in view.confirm.prompt.value
    assert not os.path.exists(stop_file) and execution.status == "Executing"
    view.cancel_button.click()
    assert not view.confirm.is_open and not view.stop_button.disabled and not os.path.exists(stop_file)

    view.stop_button.click()
    view.confirm_button.click()
    assert not view.confirm.is_open and os.path.exists(stop_file)
    wait_for(lambda: view.status == "Stopped", timeout=WAIT, what="the view to show Stopped")
    assert STATUS_COLORS["Stopped"] in view.status_html.value
    assert nodes(view)["gated"].get("data-status") == "Stopped"
    assert view.stop_button.layout.display == "none"
    wait_for(lambda: not POLLER.registered(view), timeout=30, what="the poller to drop the ended execution")
    assert execution.step_job("gated").status == "Stopped"


def test_elapsed_ticks_every_second_without_backend_calls(flow, monkeypatch):
    """watch() polls this execution every 3 s; between polls the elapsed time and the running step's time advance
    every second, redrawn from the last reading: no call to the backend."""
    execution, gate = flow.gated_run("ticking")
    try:
        stop_at = 9.0

        def open_the_gate_at_9s(clock):
            if clock.now >= stop_at and not execution.done:
                (gate / "open").touch()
                wait_for(lambda: execution.done, timeout=WAIT, what="the execution to end")

        clock = FakeClock(execution.snapshot().created, on_sleep=open_the_gate_at_9s)
        monkeypatch.setattr(execution, "refresh_interval", lambda waited: 3.0)
        calls = []
        for method in ("describe_pipeline_execution", "list_pipeline_execution_steps", "read_logs"):
            real = getattr(execution.backend, method)
            monkeypatch.setattr(execution.backend, method,
                                lambda *a, _real=real, _m=method: calls.append(_m) or _real(*a))
        view = PipelineView(execution, clock=clock.utc)
        ticks = []  # (fake second, backend calls so far, elapsed label, the step's seconds)
        view.elapsed_html.observe(lambda ch: ticks.append((clock.now, len(calls), ch["new"],
                                                           view.states["gated"].seconds)), names="value")
        views.watch_with(view, execution, clock=clock)
        running = [t for t in ticks if 0 < t[0] < stop_at]
        assert [t[0] for t in running] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]  # every second
        for before, tick in zip(running, running[1:]):
            assert f"elapsed {tick[0]:.1f}s" in tick[2], tick
            assert tick[3] - before[3] == pytest.approx(1.0)  # the running step's box ticks too
            if tick[0] % 3:  # between two 3-second polls: no backend call
                assert tick[1] == before[1], (before, tick)
            else:
                assert tick[1] > before[1], (before, tick)
        assert execution.status == "Succeeded" and "took" in view.elapsed_html.value
        assert "read_logs" not in calls  # the graph shows no log: it reads none (each step's job view reads its own)
    finally:
        (gate / "open").touch()


def test_text_view_prints_step_changes_and_the_r_error_once(flow):
    execution, gate = flow.gated_run("texting")
    out = io.StringIO()

    give_up = time.monotonic() + WAIT

    class OpensTheGateOnceExecutingIsPrinted(views.Clock):
        @staticmethod
        def sleep(seconds):  # (or after WAIT seconds: the assertions below then say what is missing)
            if "[sm-r-magic] gated: Executing" in out.getvalue() or time.monotonic() > give_up:
                (gate / "open").touch()
            time.sleep(seconds)

    views.watch_with(views.TextView(execution, out=out), execution, clock=OpensTheGateOnceExecutingIsPrinted)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"[sm-r-magic] pipeline execution {execution.name} of texting on local"
    assert lines.index("[sm-r-magic] gated: Executing") < lines.index("[gated] through the gate")
    ended = [line for line in lines if line.startswith("[sm-r-magic] gated: Succeeded (")]
    assert len(ended) == 1 and lines.index(ended[0]) > lines.index("[gated] through the gate")
    assert lines[-1].startswith(f"[sm-r-magic] pipeline execution {execution.name} of texting (local): "
                                "Succeeded · 1/1 steps succeeded · ")

    # cached steps, the condition's outcome, the Fail step's message once
    flow.run("texting-flow", flow.definition(cache="1h"))
    again = flow.start("texting-flow", flow.definition(THRESHOLD_MISSED, cache="1h"))
    out = io.StringIO()
    views.watch_with(views.TextView(again, out=out), again)
    printed = out.getvalue()
    for name in ("prep", "fit", "evaluate"):
        assert f"[sm-r-magic] {name}: Succeeded (cached)\n" in printed
    assert "[sm-r-magic] condition: Succeeded (False: the else branch runs)\n" in printed
    assert "[sm-r-magic] fail: Failed (" in printed and "[sm-r-magic] register" not in printed
    assert printed.count("RMSE above the threshold") == 1
    assert printed.endswith(" · step fail failed:\nRMSE above the threshold\n")

    # a failed job step: its R error, as its job's log showed it, and not once more at the end
    no_mpg = flow.tmp / "iris-text" / "mtcars.csv"
    no_mpg.parent.mkdir()
    r_output(f'write.csv(iris, "{no_mpg}", row.names = FALSE)')
    failing = flow.start("texting-fail", d.build(flow.cells[:2]), {"raw": str(no_mpg)})
    out = io.StringIO()
    text = views.TextView(failing, out=out)
    views.watch_with(text, failing)
    printed = out.getvalue()
    fit_log = failing.step_job("fit").logs()
    assert "object 'mpg' not found" in fit_log
    assert printed.count("object 'mpg' not found") == fit_log.count("object 'mpg' not found")
    assert printed.rstrip().endswith("· step fit failed: its R error is above") and text.reason_shown


def test_r_jobs_rows_for_executions(flow, monkeypatch, capsys):
    done = flow.run("listed", flow.definition())
    running, gate = flow.gated_run("listed-running")
    try:
        job = flow.cells[0]
        monkeypatch.setattr(views, "widgets_wanted", lambda p: True)
        board = views.show_jobs([job, done, running], limit=5)  # as %r_jobs gives them: by creation time
        assert isinstance(board, dashboard.JobsDashboard)
        assert [type(r).__name__ for r in board.job_rows] == ["_JobRow", "_ExecutionRow", "_ExecutionRow"]
        row_done, row_running = board.job_rows[1:]
        assert row_done.cells[0].value.count(done.name) == 1 and "pipeline listed<" in row_done.cells[1].value
        assert 'data-status="Succeeded"' in row_done.status.value and row_done.action_button.disabled
        assert 'data-status="Executing"' in row_running.status.value and not row_running.action_button.disabled
        assert any(ch.isdigit() for ch in row_done.duration.value)

        row_done.attach_button.click()  # the execution's step graph below the table
        attached = board.detail.children[0]
        assert isinstance(attached, PipelineView) and attached.execution.name == done.name
        assert list(nodes(attached)) == ["prep", "fit", "evaluate", "condition", "register", "fail"]
        row_running.logs_button.click()  # its steps' logs, each line labelled with its step
        assert "[gated] waiting at the gate" in board.detail.children[0].value

        row_running.action_button.click()  # Stop asks first
        assert row_running.confirm.is_open and running.status == "Executing"
        row_running.confirm.confirm_button.click()
        wait_for(lambda: 'data-status="Stopped"' in row_running.status.value, timeout=WAIT, what="row Stopped")
        assert running.status == "Stopped"
        assert f"{done.name}  pipeline listed  local  Succeeded" in board.text_summary()

        monkeypatch.setattr(views, "widgets_wanted", lambda p: False)  # the text table
        capsys.readouterr()
        views.show_jobs([job, done, running], limit=2)
        printed = capsys.readouterr().out.splitlines()
        assert [line.split()[:5] for line in printed[1:3]] == [
            [done.name, "pipeline", "listed", "local", "Succeeded"],
            [running.name, "pipeline", "listed-running", "local", "Stopped"]]
        assert printed[-1] == "1 older job not shown (--all lists every job)"
    finally:
        (gate / "open").touch()
