"""Pipelines as a user makes them (issue 13), through the magics in an IPython shell with real R: the issue's
cells, `%r_pipeline ... --register ... --as pipe`, `pipe.run()`, both condition branches, a second execution with
a new parameter value, caching, a failed step, `%r_models` newest first, `%r_approve`, `%%r_deploy
--model-package` of the newest approved version predicting what R predicts, delete; re-attaching to an
execution in a new process; the same definition on the docker backend; and every bad input as one line with
nothing created. Every wait is for a condition, bounded generously; no verdict depends on the machine's speed."""

import json
import os
import re
import subprocess
import sys
import tarfile

import pytest

from sm_r_magic.backends import get_backend
from sm_r_magic.errors import JobFailed
from sm_r_magic.backends import folder_executions as ex
from sm_r_magic.backends.local_registry import LocalModelRegistry
from sm_r_magic.pipelines import Pipeline

from .support.rlang import r_numbers, r_output

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT = 240  # seconds: generous bounds for a busy machine

PREP = """%%r_processing --name prep --input raw=data/mtcars.csv --output train --output test --as prep
df <- read.csv(file.path(sm_input("raw"), "mtcars.csv"))
idx <- seq_len(nrow(df)) %% 4 != 0
write.csv(df[idx, ], file.path(sm_output("train"), "train.csv"), row.names = FALSE)
write.csv(df[!idx, ], file.path(sm_output("test"), "test.csv"), row.names = FALSE)
"""
FIT = """%%r_train --name fit --channel train={prep.outputs["train"]} --hp formula="mpg ~ wt + hp" --as fit
df <- read.csv(file.path(sm_channel("train"), "train.csv"))
model <- lm(as.formula(sm_hp("formula")), data = df)
saveRDS(model, file.path(sm_model_dir(), "model.rds"))
"""
EVALUATE = """%%r_processing --name evaluate --input model={fit.model_data} --input test={prep.outputs["test"]} \
--output evaluation --as ev
model <- readRDS(file.path(sm_model_input("model"), "model.rds"))
test <- read.csv(file.path(sm_input("test"), "test.csv"))
rmse <- sqrt(mean((predict(model, test) - test$mpg)^2))
sm_report(list(regression_metrics = list(rmse = list(value = rmse))), output = "evaluation")
"""
SERVE = "model_fn <- function(model_dir) readRDS(file.path(model_dir, \"model.rds\"))\n"
CONDITION = "evaluate.evaluation/evaluation.json:regression_metrics.rmse.value <= {}"
NEW_ROWS = {"wt": [2.5, 3.2, 4.1], "hp": [100, 150, 230]}


@pytest.fixture(autouse=True)
def nothing_left_running(local_root):
    """Whatever a test leaves running (an assertion failing before an execution ended) is stopped after it."""
    yield
    from sm_r_magic.config import current

    pipelines = local_root / "pipelines"
    for folder in pipelines.glob("*/executions/*") if pipelines.is_dir() else ():
        ex.stop(ex.ExecutionFolder(str(folder)))
    for name in ("local", "docker"):
        if (local_root / ("jobs" if name == "local" else "docker-jobs")).is_dir():
            for job in get_backend(name, current()).list_jobs():
                if job.status == "InProgress":
                    job.stop(wait=True, timeout=60)


def cell(shell, text):
    """Run a cell as a notebook does (a new execution count: "this cell" is a new one); fail the test with the
    cell's error (failing_cell expects one)."""
    result = shell.run_cell(text, store_history=True)
    error = result.error_in_exec or result.error_before_exec
    assert error is None, f"{text.splitlines()[0]}: {type(error).__name__}: {error}"
    return result.result


def failing_cell(shell, text):
    result = shell.run_cell(text, store_history=True)
    error = result.error_in_exec or result.error_before_exec
    assert error is not None, f"{text.splitlines()[0]} did not fail"
    return error


def write_csv(path, expr):
    path.parent.mkdir(parents=True, exist_ok=True)
    r_output(f'write.csv({expr}, "{path}", row.names = FALSE)')
    return path


def run_the_cells(shell, tmp_path, evaluate=True):
    """The issue's cells, each a local job whose handle the shell holds (prep, fit, ev)."""
    write_csv(tmp_path / "data" / "mtcars.csv", "mtcars")
    for text in (PREP, FIT) + ((EVALUATE,) if evaluate else ()):
        cell(shell, text)
    (tmp_path / "serve.R").write_text(SERVE)


def steps_of(execution):
    return {step["StepName"]: step for step in execution.steps()}


def model_rds(model_tar_gz, into):
    """model.rds out of a model.tar.gz, for R to predict with."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(model_tar_gz) as tar:  # a file our own job wrote; Debian 12's Python 3.11.2 has no filter=
        (into / "model.rds").write_bytes(tar.extractfile("model.rds").read())
    return into / "model.rds"


def r_predictions(rds):
    frame = ", ".join(f"{k} = c({', '.join(map(str, v))})" for k, v in NEW_ROWS.items())
    return r_numbers(f'm <- readRDS("{rds}"); cat(sprintf("%.15g", predict(m, data.frame({frame}))), sep = " ")')


def test_the_issue_flow_through_the_magics(shell, tmp_path, local_root, capsys):
    run_the_cells(shell, tmp_path)
    cell(shell, f'%r_pipeline mtcars --steps prep,fit,ev --condition "{CONDITION.format(10)}" '
                '--register mtcars-models --inference serve.R --as pipe')
    pipe = shell.user_ns["pipe"]
    assert pipe.parameters == {"raw": str(tmp_path / "data" / "mtcars.csv")}
    assert "register the model of fit into mtcars-models (served by serve.R as inference.R)" in repr(pipe)

    # the first execution: every step, the condition holds, version 1 registered with its metrics
    capsys.readouterr()
    cell(shell, "run = pipe.run()")
    run = shell.user_ns["run"]
    assert run.status == "Succeeded", run.failure_reason
    shown = capsys.readouterr().out
    assert f"pipeline execution {run.name} of mtcars (local): Succeeded · 5/5 steps succeeded" in shown
    ran = steps_of(run)
    assert list(ran) == ["prep", "fit", "evaluate", "condition", "register"]
    assert ran["condition"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    fit_job = run.step_job("fit")
    assert fit_job.status == "Completed" and f"/{run.name}/fit/" in fit_job.model_data
    evaluation = os.path.join(run.step_job("evaluate").outputs["evaluation"], "evaluation.json")
    with open(evaluation) as fh:
        first_rmse = json.load(fh)["regression_metrics"]["rmse"]["value"]
    version = LocalModelRegistry(local_root).describe("mtcars-models", 1)
    container = version["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == fit_job.model_data
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.R"
    assert os.path.exists(container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"])  # the code is stored
    assert cell(shell, "run") is run  # a cell's result shows the execution's summary
    assert f"pipeline execution {run.name} of mtcars (local): Succeeded" in capsys.readouterr().out

    # a second execution with a new value of the cells' input: version 2, from other data
    write_csv(tmp_path / "data2" / "mtcars.csv", "mtcars[1:20, ]")
    cell(shell, 'run2 = pipe.run(parameters={"raw": "data2/mtcars.csv"})')
    run2 = shell.user_ns["run2"]
    assert run2.status == "Succeeded", run2.failure_reason
    assert run2.parameters == {"raw": str(tmp_path / "data2" / "mtcars.csv")}
    assert run2.step_job("fit").model_data != fit_job.model_data
    with open(os.path.join(run2.step_job("evaluate").outputs["evaluation"], "evaluation.json")) as fh:
        second_rmse = json.load(fh)["regression_metrics"]["rmse"]["value"]
    assert second_rmse != pytest.approx(first_rmse)

    # the else branch: a threshold the model cannot meet fails with the message and registers nothing
    cell(shell, f'%r_pipeline strict --steps prep,fit,ev --condition "{CONDITION.format(0.001)}" '
                '--register mtcars-models --inference serve.R --fail-message "RMSE above 0.001"')
    error = failing_cell(shell, "strict_run = strict.run()")
    assert isinstance(error, JobFailed) and str(error).endswith("failed: RMSE above 0.001")
    strict_steps = steps_of(error.job)
    assert strict_steps["condition"]["Metadata"] == {"Condition": {"Outcome": "False"}}
    assert strict_steps["fail"]["StepStatus"] == "Failed" and "register" not in strict_steps

    # %r_models: newest first, with status, metrics and the execution that registered each
    capsys.readouterr()
    cell(shell, "%r_models mtcars-models")
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["version", "approval", "created", "metrics", "execution"]
    assert [line.split()[0] for line in table[1:]] == ["mtcars-models/2", "mtcars-models/1"]
    assert [line.split()[1] for line in table[1:]] == ["PendingManualApproval"] * 2
    assert table[1].endswith(run2.name) and table[2].endswith(run.name)
    assert f"regression_metrics.rmse.value={first_rmse:.4g}" in table[2]

    # approve 1, reject the newer 2: the newest Approved version is 1, and it serves what R predicts
    cell(shell, "%r_approve mtcars-models/1")
    cell(shell, "%r_approve mtcars-models/2 --reject")
    assert capsys.readouterr().out.splitlines() == ["mtcars-models/1: Approved", "mtcars-models/2: Rejected"]
    cell(shell, "%r_deploy --model-package mtcars-models --as ep")
    ep = shell.user_ns["ep"]
    assert ep.status == "InService"
    served = ep.backend.endpoint_model_request(ep.endpoint_name)["PrimaryContainer"]
    assert served["ModelDataUrl"] == fit_job.model_data
    assert served["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"]
    expected = r_predictions(model_rds(fit_job.model_data, tmp_path / "v1"))
    assert ep.predict(NEW_ROWS) == pytest.approx(expected, rel=1e-12)

    # approving 2 makes it the one deployed (a dry run: the requests, nothing created)
    cell(shell, "%r_approve mtcars-models/2")
    capsys.readouterr()
    cell(shell, "%r_deploy --model-package mtcars-models --dry-run")
    requests = json.loads(capsys.readouterr().out)
    assert requests["CreateModel"]["PrimaryContainer"]["ModelDataUrl"] == run2.step_job("fit").model_data

    # %r_jobs lists the executions beside the jobs
    cell(shell, "%r_jobs --all")
    listed = capsys.readouterr().out
    for execution, status in ((run, "Succeeded"), (run2, "Succeeded"), (error.job, "Failed")):
        assert re.search(rf"^{execution.name}\s+pipeline {execution.pipeline_name}\s+local\s+{status}\s", listed,
                         re.MULTILINE), listed

    cell(shell, "ep.delete()")
    assert ep.status == "Deleted"


def test_cached_steps_reuse_the_earlier_runs(shell, tmp_path, local_root):
    run_the_cells(shell, tmp_path, evaluate=False)
    cell(shell, "%r_pipeline split-fit --steps fit,prep --cache 1h --as cached")  # any order
    cell(shell, "first = cached.run()")
    cell(shell, "second = cached.run()")
    first, second = shell.user_ns["first"], shell.user_ns["second"]
    assert first.status == second.status == "Succeeded", (first.failure_reason, second.failure_reason)
    for name in ("prep", "fit"):
        assert "CacheHitResult" not in steps_of(first)[name]
        reused = steps_of(second)[name]
        assert reused["CacheHitResult"]["SourcePipelineExecutionArn"].endswith(f"/execution/{first.name}")
        assert second.step_job(name).name == first.step_job(name).name  # no new job ran
    write_csv(tmp_path / "data3" / "mtcars.csv", "mtcars[5:30, ]")
    cell(shell, 'third = cached.run(parameters={"raw": "data3/mtcars.csv"})')
    third = shell.user_ns["third"]
    assert third.status == "Succeeded", third.failure_reason
    for name in ("prep", "fit"):  # a new input: both ran again
        assert "CacheHitResult" not in steps_of(third)[name]
        assert third.step_job(name).name != first.step_job(name).name


def test_a_failed_step_fails_the_execution_with_its_r_error_and_it_is_found_again_in_a_new_process(
        shell, tmp_path, local_root):
    run_the_cells(shell, tmp_path)
    write_csv(tmp_path / "iris" / "mtcars.csv", "iris")  # the same file name, no mpg column
    error = failing_cell(shell, f'%r_pipeline mtcars --steps prep,fit,ev --condition "{CONDITION.format(10)}" '
                                "--register mtcars-models --inference serve.R --run --param raw=iris/mtcars.csv")
    assert isinstance(error, JobFailed)
    run = error.job
    assert "object 'mpg' not found" in str(error)
    ran = steps_of(run)
    assert ran["prep"]["StepStatus"] == "Succeeded" and ran["fit"]["StepStatus"] == "Failed"
    assert list(ran) == ["prep", "fit"]  # evaluate, condition and register never started
    fit_job = run.step_job("fit")
    assert run.failure_reason.startswith(f"step fit (training job {fit_job.name}) failed: ")
    assert "object 'mpg' not found" in fit_job.logs()  # its job folder is kept, with the R error
    assert os.path.isdir(fit_job.local_folder)
    assert not (local_root / "model-registry").exists()
    assert isinstance(shell.user_ns["mtcars"], Pipeline) and shell.user_ns["mtcars"].name == "mtcars"  # kept

    # a new process (a restarted kernel): %r_attach finds the execution, its steps and each step's job
    script = f"""
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic("load_ext", "sm_r_magic")
result = ip.run_cell("%r_attach {run.name} --as again")
assert result.error_in_exec is None, result.error_in_exec
again = ip.user_ns["again"]
print("STATUS", again.status, again.pipeline_name)
print("STEPS", " ".join(s["StepName"] + ":" + s["StepStatus"] for s in again.steps()))
print("FIT", again.step_job("fit").name, again.step_job("fit").status)
print("REASON", again.failure_reason.splitlines()[0])
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
               SM_R_MAGIC_LOCAL_ROOT=str(local_root))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=WAIT,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.stdout.splitlines() if " " in line}
    assert lines["STATUS"] == "Failed mtcars"
    assert lines["STEPS"] == "prep:Succeeded fit:Failed"
    assert lines["FIT"] == f"{fit_job.name} Failed"
    assert lines["REASON"] == run.failure_reason.splitlines()[0]
    assert f"pipeline execution {run.name} of mtcars (local): Failed" in out.stdout  # %r_attach shows it


def test_versions_are_served_by_a_deploy_handles_code_or_by_the_code_saved_with_the_model(shell, tmp_path,
                                                                                           local_root):
    write_csv(tmp_path / "data" / "mtcars.csv", "mtcars")
    (tmp_path / "deploy.R").write_text(SERVE)
    cell(shell, PREP)
    cell(shell, FIT.replace("--as fit", "--file deploy.R --as fit"))  # its code (saved with the model) serves it
    cell(shell, '%%r_deploy --model {fit} --name served --as served\n'
                'model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))\n'
                'predict_fn <- function(data, model) -predict(model, data)\n')  # tells its answers apart
    code = shell.user_ns["served"].backend.endpoint_model_request(shell.user_ns["served"].endpoint_name)
    cell(shell, "%r_pipeline by-handle --steps prep,fit --register handle-models --inference served --run")
    cell(shell, "%r_pipeline by-default --steps prep,fit --register saved-models --run")
    registry = LocalModelRegistry(local_root)
    by_handle = registry.describe("handle-models", 1)["InferenceSpecification"]["Containers"][0]["Environment"]
    assert by_handle["SAGEMAKER_SUBMIT_DIRECTORY"] == \
        code["PrimaryContainer"]["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"]
    assert registry.describe("saved-models", 1)["InferenceSpecification"]["Containers"][0]["Environment"] == {}
    cell(shell, "served.delete()")
    model = registry.describe("saved-models", 1)["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    expected = r_predictions(model_rds(model, tmp_path / "saved"))
    for group, sign in (("handle-models", -1), ("saved-models", 1)):
        cell(shell, f"%r_approve {group}/1")
        cell(shell, f"%r_deploy --model-package {group} --as ep")
        ep = shell.user_ns["ep"]
        try:
            assert ep.predict(NEW_ROWS) == pytest.approx([sign * v for v in expected], rel=1e-12), group
        finally:
            ep.delete()


def test_a_pipeline_without_a_widget_module_is_watched_as_text(shell, tmp_path, local_root):
    """The execution's widget is views/pipeline.py; where it is missing (or no widget frontend), text."""
    from sm_r_magic import views
    from sm_r_magic.views.text import TextView

    run_the_cells(shell, tmp_path, evaluate=False)
    execution = cell(shell, "%r_pipeline two --steps prep,fit --run --async --as two")
    assert [e.name for e in shell.user_ns["two"].executions()] == [execution.name]
    try:
        from sm_r_magic.views.pipeline import PipelineView
        expected = PipelineView.__name__
    except ImportError:
        expected = TextView.__name__
    assert type(views.make_view(execution, "widget")).__name__ == expected
    assert type(views.make_view(execution, "text")) is TextView
    execution.wait(progress="none", timeout=WAIT)
    assert execution.status == "Succeeded", execution.failure_reason


@pytest.mark.docker
def test_the_same_definition_runs_on_the_docker_backend_and_its_version_deploys_there(shell, tmp_path, local_root):
    from .support.docker_engine import IMAGE, require_image

    require_image()
    cell(shell, f'%config RMagic.image = "{IMAGE}"')
    run_the_cells(shell, tmp_path)  # the cells ran locally
    cell(shell, f'%r_pipeline mtcars --steps prep,fit,ev --condition "{CONDITION.format(10)}" '
                '--register docker-models --inference serve.R --as pipe')
    local_definition = shell.user_ns["pipe"].definition()
    assert shell.user_ns["pipe"].definition(backend="docker") == local_definition
    cell(shell, 'run = pipe.run(backend="docker")')
    run = shell.user_ns["run"]
    assert run.status == "Succeeded", run.failure_reason
    assert run.backend_name == "docker" and run.definition == local_definition
    fit_job = run.step_job("fit")
    assert fit_job.backend_name == "docker" and fit_job.status == "Completed"
    assert (local_root / "docker-jobs" / fit_job.name).is_dir()
    assert steps_of(run)["condition"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    assert [e.name for e in shell.user_ns["pipe"].executions(backend="docker")] == [run.name]
    assert shell.user_ns["pipe"].executions(backend="local") == []  # listed by the backend it ran on
    cell(shell, "%r_approve docker-models/1")
    cell(shell, "%r_deploy --model-package docker-models --backend docker --as ep")
    ep = shell.user_ns["ep"]
    assert ep.status == "InService", ep.failure_reason
    expected = r_predictions(model_rds(fit_job.model_data, tmp_path / "v1"))
    assert ep.predict(NEW_ROWS) == pytest.approx(expected, rel=1e-12)
    cell(shell, "ep.delete()")


def files_under(root):
    """What the user's jobs, pipelines and registry left under the local root (not the warm runners' own pool
    folder, which the kernel refills in the background whatever a cell does)."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.relative_to(root).parts[0] != "warm")


def test_every_bad_input_is_one_line_and_creates_nothing(shell, tmp_path, local_root):
    from IPython.core.error import UsageError

    run_the_cells(shell, tmp_path)
    cell(shell, '%%r_train --name fit2 --channel train={prep.outputs["train"]} --as fit2\n'
                'saveRDS(lm(mpg ~ wt, read.csv(file.path(sm_channel("train"), "train.csv"))), '
                'file.path(sm_model_dir(), "model.rds"))')
    for name in ("a", "b"):  # two cells reading each other's output: a cycle
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.txt").write_text("x\n")
    cell(shell, f"%%r_processing --name a --input x={tmp_path / 'b'} --output o={tmp_path / 'a'} --as a\n1")
    cell(shell, f"%%r_processing --name b --input x={tmp_path / 'a'} --output o={tmp_path / 'b'} --as b\n1")
    (tmp_path / "no_model_fn.R").write_text("predict_fn <- function(data, model) 1\n")
    (tmp_path / "broken.R").write_text("model_fn <- function(model_dir) {\n")
    shell.user_ns["not_a_handle"] = 42
    backend = get_backend("local", shell.user_ns["fit"].backend.config)
    registry = LocalModelRegistry(local_root)
    registry.create_group("empty-models")
    request = {"ModelPackageGroupName": "pending-models", "InferenceSpecification": {"Containers": [
        {"Image": "sm-r-magic:latest", "ModelDataUrl": shell.user_ns["fit"].model_data}]}}
    backend.register_model_package(request)  # version 1, PendingManualApproval
    backend.register_model_package(dict(request, ModelApprovalStatus="Rejected"))  # version 2
    steps = "--steps prep,fit,ev"
    register = "--register mtcars-models --inference serve.R"
    cases = [
        (f"%r_pipeline p --steps prep,nope,ev {register}", "--steps: nope is not a job handle of this session"),
        (f"%r_pipeline p --steps prep,not_a_handle {register}", "--steps: not_a_handle holds a int, not a job handle"),
        ("%r_pipeline p --steps a,b", "steps a, b depend on each other \\(a cycle\\)"),
        ("%r_pipeline p", "%r_pipeline needs --steps"),
        ("%r_pipeline p --steps ' , '", "%r_pipeline needs --steps"),
        (f'%r_pipeline p {steps} --condition "evaluate.evaluation/missing.json:a <= 1"',
         "the last run of evaluate wrote no missing.json to its output evaluation"),
        (f'%r_pipeline p {steps} --condition "evaluate.report/evaluation.json:a <= 1"',
         "step evaluate writes no output 'report' \\(its outputs: evaluation\\)"),
        (f'%r_pipeline p {steps} --condition "scoring.evaluation/evaluation.json:a <= 1"',
         "no step is named 'scoring'"),
        (f'%r_pipeline p {steps} --condition "evaluate.evaluation/evaluation.json:a => 3"',
         "unknown operator '=>' in condition"),
        (f'%r_pipeline p {steps} --condition "{CONDITION.format("three")}"',
         "the right side 'three' .* is not a number"),
        ("%r_pipeline p --steps prep,ev --register mtcars-models", "--register mtcars-models needs a training step"),
        ("%r_pipeline p --steps prep,fit,fit2 --register mtcars-models --inference serve.R",
         "there are 2 training steps \\(fit, fit2\\): say whose model to register with --model-step"),
        ("%r_pipeline p --steps prep,fit,fit2 --register mtcars-models --model-step prep --inference serve.R",
         "--model-step 'prep' is not a training step"),
        (f"%r_pipeline my_pipeline {steps}", "invalid pipeline name 'my_pipeline'"),
        (f"%r_pipeline p {steps} --register models_v2", "invalid model package group name 'models_v2'"),
        (f"%r_pipeline p {steps} --register mtcars-models",
         "would be served by the code saved with it \\(train.R\\), which has no deploy.R or inference.R"),
        (f"%r_pipeline p {steps} --register mtcars-models --inference missing.R", "--inference missing.R: no such"),
        (f"%r_pipeline p {steps} --register mtcars-models --inference no_model_fn.R", "defines no model_fn"),
        (f"%r_pipeline p {steps} --register mtcars-models --inference broken.R",
         "--inference broken.R: R code does not parse"),
        (f"%r_pipeline p {steps} --inference serve.R", "--inference .* goes with --register"),
        (f"%r_pipeline p {steps} --fail-message 'too high'", "a fail message needs a condition"),
        (f"%r_pipeline p {steps} --cache soon", "cache 'soon': give a duration like 30d"),
        (f"%r_pipeline p {steps} --run --param rwa=data/mtcars.csv",
         "unknown pipeline parameter\\(s\\) rwa: this pipeline's parameters are raw"),
        (f"%r_pipeline p {steps} --run --param raw=data/missing.csv", "parameter raw: .*missing.csv does not exist"),
        (f"%r_pipeline p {steps} --param raw=data/mtcars.csv", "--param and --async go with --run"),
        (f"%r_pipeline prep {steps}", "would be stored in `prep`, which already holds a Job"),
        ("%r_deploy --model-package empty-models", "--model-package empty-models: the group has no versions yet"),
        ("%r_deploy --model-package nosuch-models", "no model package group 'nosuch-models' in the local registry"),
        ("%r_deploy --model-package pending-models",
         "no version is Approved \\(newest: pending-models/2, Rejected\\): approve one with %r_approve "
         "pending-models/2"),
        ("%r_deploy --model-package pending-models/2", "pending-models/2 is Rejected: approve it first"),
        ("%r_deploy --model-package pending-models/7", "model package group pending-models has no version 7"),
        ("%r_deploy --model-package pending-models --model {fit}", "give --model or --model-package, not both"),
        ("%r_approve pending-models", "say which version, e.g. pending-models/1"),
        ("%r_approve pending-models/x", "write GROUP/VERSION with a version number"),
        ("%r_models nosuch-models", "no model package group 'nosuch-models'"),
        ("%r_models pending-models/1", "give a model package group \\(pending-models\\), not a version"),
    ]
    before, names_before = files_under(local_root), set(shell.user_ns)
    for line, message in cases:
        error = failing_cell(shell, line)
        assert isinstance(error, UsageError), f"{line}: {type(error).__name__}: {error}"
        assert "\n" not in str(error), f"{line}: more than one line: {error}"
        assert re.search(message, str(error)), f"{line}: {error}"
        assert files_under(local_root) == before, f"{line} created files"
        assert not {name for name in set(shell.user_ns) - names_before if not name.startswith("_")}, line

    # the Python API says the same, one line (an SmRMagicError), and runs nothing
    import sm_r_magic
    from sm_r_magic.errors import SmRMagicError

    pipe = sm_r_magic.pipeline("mtcars", [shell.user_ns[n] for n in ("prep", "fit", "ev")])
    with pytest.raises(SmRMagicError, match="unknown pipeline parameter\\(s\\) rwa"):
        pipe.run(parameters={"rwa": "x"})
    with pytest.raises(SmRMagicError, match="a pipeline needs at least one step"):
        sm_r_magic.pipeline("mtcars", [])
    with pytest.raises(SmRMagicError, match="step 'prep' is not a job handle of this session"):
        sm_r_magic.pipeline("mtcars", ["prep"])
    assert files_under(local_root) == before
