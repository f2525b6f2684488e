"""The local executor of the pipeline definition JSON, with real R on the local backend: the issue's 4-step
flow (processing split, training, evaluation writing evaluation.json with sm_report, a condition, register)
from cells run through sm_r_magic.processing/train; both condition branches; a second execution with a new
parameter value; caching; a failed step; a stop; parallel steps; re-reading an execution in a new process.
Every wait is for a condition, bounded generously; no verdict depends on the machine's speed."""

import json
import os
import subprocess
import sys
import tarfile
import time

import pytest

import sm_r_magic
from sm_r_magic.backends import get_backend
from sm_r_magic.workflow import definition as d
from sm_r_magic.backends import folder_executions as ex
from sm_r_magic.backends.local_registry import LocalModelRegistry

from .support.rlang import r_output
from .support.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT = 180  # seconds: generous bounds for a busy machine

PREP = """
df <- read.csv(file.path(sm_input("raw"), "mtcars.csv"))
idx <- seq_len(nrow(df)) %% 4 != 0
write.csv(df[idx, ], file.path(sm_output("train"), "train.csv"), row.names = FALSE)
write.csv(df[!idx, ], file.path(sm_output("test"), "test.csv"), row.names = FALSE)
"""
FIT = """
df <- read.csv(file.path(sm_channel("train"), "train.csv"))
model <- lm(as.formula(sm_hp("formula")), data = df)
saveRDS(model, file.path(sm_model_dir(), "model.rds"))
"""
EVALUATE = """
model <- readRDS(file.path(sm_model_input("model"), "model.rds"))
test <- read.csv(file.path(sm_input("test"), "test.csv"))
rmse <- sqrt(mean((predict(model, test) - test$mpg)^2))
sm_report(list(regression_metrics = list(rmse = list(value = rmse))), output = "evaluation")
"""
CONDITION = "evaluate.evaluation/evaluation.json:regression_metrics.rmse.value <= {}"


@pytest.fixture(autouse=True)
def nothing_left_running(settings, local_root):
    """Whatever a test leaves running (a failed assertion before a stop) is stopped after it."""
    yield
    pipelines = local_root / "pipelines"
    for folder in pipelines.glob("*/executions/*") if pipelines.is_dir() else ():
        ex.stop(ex.ExecutionFolder(str(folder)))
    for job in get_backend("local", settings).list_jobs():
        if job.status == "InProgress":
            job.stop(wait=True, timeout=60)


def write_csv(path, expr):
    path.parent.mkdir(parents=True, exist_ok=True)
    r_output(f'write.csv({expr}, "{path}", row.names = FALSE)')
    return path


def run_cells(csv, evaluate=True):
    """The issue's cells, run as local jobs: prep splits, fit trains, evaluate reports the RMSE."""
    prep = sm_r_magic.processing(PREP, name="prep", inputs={"raw": str(csv)}, outputs={"train": None, "test": None},
                                 progress="none")
    fit = sm_r_magic.train(FIT, name="fit", channels={"train": prep.outputs["train"]},
                           hyperparameters={"formula": "mpg ~ wt + hp"}, progress="none")
    if not evaluate:
        return [prep, fit]
    ev = sm_r_magic.processing(EVALUATE, name="evaluate", outputs={"evaluation": None}, progress="none",
                               inputs={"model": fit.model_data, "test": prep.outputs["test"]})
    return [prep, fit, ev]


def backend():
    return get_backend("local", sm_r_magic.settings())


def run(definition, parameters=None, pipeline="mtcars"):
    folder = ex.start(backend(), pipeline, definition, parameters)
    answer = ex.wait(folder, timeout=WAIT)
    assert answer["PipelineExecutionStatus"] in ex.EXECUTION_TERMINAL, answer
    return folder, answer


def steps(answer):
    return {step["StepName"]: step for step in answer["Steps"]}


def read_csv_rows(path):
    with open(path) as fh:
        return len(fh.read().strip().splitlines()) - 1


def test_the_four_step_flow_both_branches_and_a_second_execution(settings, local_root, tmp_path):
    csv = write_csv(tmp_path / "data" / "mtcars.csv", "mtcars")
    cells = run_cells(csv)
    assert [c.status for c in cells] == ["Completed"] * 3
    with open(os.path.join(cells[2].outputs["evaluation"], "evaluation.json")) as fh:
        cell_rmse = json.load(fh)["regression_metrics"]["rmse"]["value"]  # sm_report wrote full precision
    definition = d.build(cells, condition=CONDITION.format(10), register="mtcars-models",
                         fail_message="RMSE above the threshold")
    assert definition["Parameters"] == [{"Name": "raw", "Type": "String", "DefaultValue": str(csv)}]

    first_folder, first = run(definition)
    assert first["PipelineExecutionStatus"] == "Succeeded", first["FailureReason"]
    ran = steps(first)
    assert [s["StepName"] for s in first["Steps"]] == ["prep", "fit", "evaluate", "condition", "register"]
    assert all(s["StepStatus"] == "Succeeded" for s in first["Steps"])
    assert ran["condition"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    assert "fail" not in ran
    for name in ("prep", "fit", "evaluate"):  # new jobs, named after the step, kept under the local root
        job = sm_r_magic.attach(ran[name]["JobName"], backend="local")
        assert job.base_name == name and job.status == "Completed"
    first_id = first["PipelineExecutionId"]
    assert len(first_id) == 12 and first_id.isalnum() and first_id.lower() == first_id
    prep_job = sm_r_magic.attach(ran["prep"]["JobName"], backend="local")
    first_train = prep_job.outputs["train"]
    assert first_train == os.path.join(str(local_root), "output", first_id, "prep", "train")

    registry = LocalModelRegistry(local_root)
    version = registry.describe("mtcars-models", 1)
    fit_job = sm_r_magic.attach(ran["fit"]["JobName"], backend="local")
    assert version["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == fit_job.model_data
    assert f"/{first_id}/fit/" in fit_job.model_data
    assert version["Metrics"]["regression_metrics"]["rmse"]["value"] == pytest.approx(cell_rmse)
    assert version["MetadataProperties"]["GeneratedBy"] == first["PipelineExecutionArn"]
    assert ran["register"]["Metadata"] == {"RegisterModel": {"Arn": "local:model-package/mtcars-models/1"}}

    # a second execution with new data: its outputs go elsewhere and the first's stay as they were
    new_csv = write_csv(tmp_path / "data2" / "mtcars.csv", "mtcars[1:20, ]")
    _, second = run(definition, {"raw": str(new_csv)})
    assert second["PipelineExecutionStatus"] == "Succeeded", second["FailureReason"]
    assert second["Parameters"] == [{"Name": "raw", "Value": str(new_csv)}]
    second_train = sm_r_magic.attach(steps(second)["prep"]["JobName"], backend="local").outputs["train"]
    assert second_train != first_train
    assert read_csv_rows(os.path.join(first_train, "train.csv")) == 24
    assert read_csv_rows(os.path.join(second_train, "train.csv")) == 15
    assert [p["ModelPackageVersion"] for p in registry.list_packages("mtcars-models")["ModelPackageSummaryList"]] \
        == [2, 1]

    # the else branch: a threshold the model cannot meet fails the execution with the message, registers nothing
    strict = d.build(cells, condition=CONDITION.format(0.001), register="mtcars-models",
                     fail_message="RMSE above the threshold")
    _, third = run(strict)
    assert third["PipelineExecutionStatus"] == "Failed"
    assert third["FailureReason"] == "RMSE above the threshold"
    ran = steps(third)
    assert ran["condition"]["Metadata"] == {"Condition": {"Outcome": "False"}}
    assert ran["fail"]["StepStatus"] == "Failed" and "register" not in ran
    assert registry.versions("mtcars-models") == [2, 1]

    # a new process (a restarted kernel) finds the first execution again from its folder
    script = ("import json, sys; from sm_r_magic.backends import folder_executions as ex; "
              "print(json.dumps(ex.describe(ex.find(sys.argv[1], sys.argv[2])), default=str))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", script, str(local_root), first_id], capture_output=True, text=True,
                         env=env, check=True).stdout
    again = json.loads(out)
    assert again["PipelineExecutionStatus"] == "Succeeded"
    assert [(s["StepName"], s["StepStatus"], s.get("JobName")) for s in again["Steps"]] == \
        [(s["StepName"], s["StepStatus"], s.get("JobName")) for s in first["Steps"]]
    with open(os.path.join(first_folder.path, "definition.json")) as fh:
        assert json.load(fh) == definition
    summaries = ex.list_executions(local_root, "mtcars")["PipelineExecutionSummaries"]
    assert [s["PipelineExecutionId"] for s in summaries][-1] == first_id and len(summaries) == 3


def test_cached_steps_reuse_the_earlier_jobs_until_arguments_change_or_the_cache_expires(settings, local_root,
                                                                                          tmp_path):
    csv = write_csv(tmp_path / "data" / "mtcars.csv", "mtcars")
    cells = run_cells(csv, evaluate=False)
    definition = d.build(cells, cache="1h")
    _, first = run(definition)
    assert first["PipelineExecutionStatus"] == "Succeeded", first["FailureReason"]
    jobs_before = sorted(os.listdir(local_root / "jobs"))

    _, second = run(definition)
    assert second["PipelineExecutionStatus"] == "Succeeded", second["FailureReason"]
    for name in ("prep", "fit"):
        step = steps(second)[name]
        assert step["CacheHitResult"] == {"SourcePipelineExecutionArn": first["PipelineExecutionArn"]}
        assert step["JobName"] == steps(first)[name]["JobName"]
    assert sorted(os.listdir(local_root / "jobs")) == jobs_before  # no job ran

    new_csv = write_csv(tmp_path / "data2" / "mtcars.csv", "mtcars[1:20, ]")
    _, third = run(definition, {"raw": str(new_csv)})
    assert third["PipelineExecutionStatus"] == "Succeeded", third["FailureReason"]
    for name in ("prep", "fit"):  # prep's input changed, so did fit's: both ran again
        assert "CacheHitResult" not in steps(third)[name]
        assert steps(third)[name]["JobName"] not in jobs_before

    short = d.build(cells[:1], cache="PT1S")
    _, once = run(short, pipeline="short")
    ended = once["EndTime"].timestamp()
    wait_for(lambda: time.time() - ended > 1.5, timeout=WAIT, what="the cached run to expire")
    _, expired = run(short, pipeline="short")
    assert "CacheHitResult" not in steps(expired)["prep"]
    assert steps(expired)["prep"]["JobName"] != steps(once)["prep"]["JobName"]


def test_a_failed_step_fails_the_execution_with_its_r_error_and_later_steps_do_not_run(settings, local_root,
                                                                                       tmp_path):
    csv = write_csv(tmp_path / "data" / "mtcars.csv", "mtcars")
    cells = run_cells(csv, evaluate=False)
    definition = d.build(cells, register="mtcars-models")
    no_mpg = write_csv(tmp_path / "iris" / "mtcars.csv", "iris")  # same file name, no mpg column
    _, answer = run(definition, {"raw": str(no_mpg)})
    assert answer["PipelineExecutionStatus"] == "Failed"
    ran = steps(answer)
    assert ran["prep"]["StepStatus"] == "Succeeded" and ran["fit"]["StepStatus"] == "Failed"
    assert "register" not in ran
    fit_job = ran["fit"]["JobName"]
    assert "object 'mpg' not found" in ran["fit"]["FailureReason"]
    assert answer["FailureReason"].startswith(f"step fit (training job {fit_job}) failed: ")
    assert "object 'mpg' not found" in answer["FailureReason"]
    folder = local_root / "jobs" / fit_job  # kept, with the R error in its log
    assert "object 'mpg' not found" in (folder / "logs.txt").read_text()
    assert not os.path.exists(LocalModelRegistry(local_root).path)


def test_stop_stops_the_running_step_job(settings, local_root, tmp_path):
    seconds = tmp_path / "zero" / "seconds.txt"
    seconds.parent.mkdir()
    seconds.write_text("0\n")
    code = 'Sys.sleep(as.numeric(readLines(file.path(sm_input("seconds"), "seconds.txt"))))\n'
    cell = sm_r_magic.processing(code, name="sleepy", inputs={"seconds": str(seconds)}, progress="none")
    assert cell.status == "Completed"
    long = tmp_path / "long" / "seconds.txt"
    long.parent.mkdir()
    long.write_text("600\n")
    folder = ex.start(backend(), "sleepy", d.build([cell]), {"seconds": str(long)})

    def sleeping_job():
        step = steps(ex.describe(folder)).get("sleepy", {})
        job = sm_r_magic.attach(step["JobName"], backend="local") if step.get("JobName") else None
        return job if job is not None and job.secondary_status == "Processing" else None

    job = wait_for(sleeping_job, timeout=WAIT, what="R sleeping in the step's job")
    assert ex.stop(folder) is True
    answer = ex.wait(folder, timeout=WAIT)
    assert answer["PipelineExecutionStatus"] == "Stopped"
    assert steps(answer)["sleepy"]["StepStatus"] == "Stopped"
    job.forget()
    assert job.status == "Stopped"
    assert ex.stop(folder) is False  # already ended


def test_a_stop_right_after_start_leaves_no_job_running(settings, local_root, tmp_path):
    """The first job starts before the runner does: a stop then must still reach it."""
    seconds = tmp_path / "zero" / "seconds.txt"
    seconds.parent.mkdir()
    seconds.write_text("0\n")
    code = 'Sys.sleep(as.numeric(readLines(file.path(sm_input("seconds"), "seconds.txt"))))\n'
    cell = sm_r_magic.processing(code, name="sleepy", inputs={"seconds": str(seconds)}, progress="none")
    long = tmp_path / "long" / "seconds.txt"
    long.parent.mkdir()
    long.write_text("600\n")
    folder = ex.start(backend(), "sleepy", d.build([cell]), {"seconds": str(long)})
    assert ex.stop(folder) is True
    answer = ex.wait(folder, timeout=WAIT)
    assert answer["PipelineExecutionStatus"] == "Stopped"
    step = steps(answer)["sleepy"]
    assert step["StepStatus"] == "Stopped"
    assert sm_r_magic.attach(step["JobName"], backend="local").status == "Stopped"


def test_independent_steps_run_in_parallel(settings, local_root, tmp_path):
    """Each step writes its own mark and waits for the other's: both succeed only if they run at once."""
    code = """
where <- readLines(file.path(sm_input("meeting"), "where.txt"))
file.create(file.path(where, "{me}"))
deadline <- Sys.time() + 90
while (!file.exists(file.path(where, "{other}"))) {{
  if (Sys.time() > deadline) stop("{other} never ran alongside {me}")
  Sys.sleep(0.05)
}}
"""
    met = tmp_path / "met"
    met.mkdir()
    where = tmp_path / "cell" / "where.txt"
    where.parent.mkdir()
    where.write_text(f"{met}\n")
    (met / "a").touch()
    (met / "b").touch()
    a = sm_r_magic.processing(code.format(me="a", other="b"), name="a", inputs={"meeting": str(where)},
                              progress="none")
    b = sm_r_magic.processing(code.format(me="b", other="a"), name="b", inputs={"meeting": str(where)},
                              progress="none")
    definition = d.build([a, b])
    assert definition["Parameters"] == [{"Name": "meeting", "Type": "String", "DefaultValue": str(where)}]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (tmp_path / "run" / "where.txt").parent.mkdir()
    (tmp_path / "run" / "where.txt").write_text(f"{fresh}\n")
    _, answer = run(definition, {"meeting": str(tmp_path / "run" / "where.txt")}, pipeline="meet")
    assert answer["PipelineExecutionStatus"] == "Succeeded", answer["FailureReason"]
    assert sorted(os.listdir(fresh)) == ["a", "b"]


def test_bad_parameters_are_one_line_and_start_nothing(settings, local_root, tmp_path):
    csv = write_csv(tmp_path / "data" / "mtcars.csv", "mtcars")
    definition = d.build([{"kind": "processing", "base_name": "prep", "request": {
        "ProcessingJobName": "prep-20270101-000000-aaaa", "AppSpecification": {"ImageUri": "i"},
        "ProcessingInputs": [{"InputName": "raw", "S3Input": {"S3Uri": str(csv), "LocalPath": "/opt/ml/x"}}]}}])
    for parameters, message in (({"rwa": "x"}, "unknown pipeline parameter\\(s\\) rwa: this pipeline's parameters "
                                               "are raw"),
                                ({"raw": str(tmp_path / "missing.csv")}, "parameter raw: .*missing.csv does not "
                                                                         "exist")):
        with pytest.raises(sm_r_magic.errors.SmRMagicError, match=message):
            ex.start(backend(), "mtcars", definition, parameters)
    with pytest.raises(sm_r_magic.errors.SmRMagicError, match="invalid pipeline name 'my pipeline'"):
        ex.start(backend(), "my pipeline", definition)
    assert not os.path.exists(local_root / "pipelines")


def test_sm_model_input_extracts_once_and_says_what_to_pass(settings, local_root, tmp_path):
    model = tmp_path / "model" / "model.tar.gz"
    model.parent.mkdir()
    (tmp_path / "hello.txt").write_text("hi\n")
    with tarfile.open(model, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        tar.add(tmp_path / "hello.txt", arcname="hello.txt")
    code = """
first <- sm_model_input("model")
file.remove(file.path(first, "hello.txt"))
second <- sm_model_input("model")
stopifnot(identical(first, second), !file.exists(file.path(second, "hello.txt")))
path <- sm_report(list(folder = first, n = 1/3), output = "out", file = "sub/report.json")
"""
    job = sm_r_magic.processing(code, name="unpack", inputs={"model": str(model)}, outputs={"out": None},
                                progress="none")
    assert job.status == "Completed", job.failure_reason
    with open(os.path.join(job.outputs["out"], "sub", "report.json")) as fh:
        report = json.load(fh)
    assert report["folder"].endswith("/processing/input/model/model")
    assert report["n"] == pytest.approx(1 / 3, rel=1e-14)  # digits = NA: 15 significant digits, not 4
    not_a_model = sm_r_magic.processing('sm_model_input("model")', name="unpack", inputs={"model": str(tmp_path /
                                        "hello.txt")}, progress="none", raise_on_failure=False)
    assert not_a_model.status == "Failed"
    assert ("input 'model' holds no .tar.gz file: pass one model.tar.gz, e.g. --input model={fit.model_data}"
            in not_a_model.failure_reason)


@pytest.mark.docker
def test_the_same_definition_runs_on_the_docker_backend(settings, local_root, tmp_path):
    """The executor only calls the backend: the flow's cells and their pipeline run in the shared image (the
    R helpers sm_report and sm_model_input inside it too)."""
    from .support.docker_engine import IMAGE, require_image

    require_image()
    settings.image = IMAGE
    settings.backend = "docker"
    csv = write_csv(tmp_path / "data" / "mtcars.csv", "mtcars")
    cells = run_cells(csv)
    assert [c.backend_name for c in cells] == ["docker"] * 3
    definition = d.build(cells, condition=CONDITION.format(10), register="docker-models")
    folder = ex.start(get_backend("docker", settings), "mtcars-docker", definition)
    answer = ex.wait(folder, timeout=WAIT)
    assert answer["PipelineExecutionStatus"] == "Succeeded", answer["FailureReason"]
    assert answer["Backend"] == "docker"
    ran = steps(answer)
    assert ran["condition"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    job = get_backend("docker", settings).attach(ran["fit"]["JobName"])
    assert job.backend_name == "docker" and job.status == "Completed"
    version = LocalModelRegistry(local_root).describe("docker-models", 1)
    assert version["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == job.model_data
    assert version["Metrics"]["regression_metrics"]["rmse"]["value"] > 0
