"""Pipelines and the model registry on the sagemaker backend, over real HTTP against a moto server
(tests/support/moto_server.py): upsert, start with parameters, the requests as botocore sent them (captured
with botocore events), executions listed and attached again by a new backend object (a restarted kernel),
watching an execution and its steps' jobs, the registry (groups, versions newest first, approval), deploying
the newest approved version, and retargeting a pipeline built from real local cells (real R on the local
backend) to SageMaker.

moto 5.2.5 makes every execution Succeeded at once and runs no step; tests drive what they need through moto's
in-process backend objects (the execution's status, the step jobs' status and end time). moto does not
implement ListPipelineExecutionSteps nor StopPipelineExecution (HTTP 500): for those two operations only,
botocore's Stubber stands in (OperationStubber below: it checks our request and the answer against SageMaker's
model, and every other call still goes to moto).
"""

import copy
import datetime
import hashlib
import json
import os

import pytest
from botocore.stub import Stubber

import sm_r_magic
from sm_r_magic import sourcedir, spec
from sm_r_magic.backends import get_backend
from sm_r_magic.backends.sagemaker import SageMakerBackend
from sm_r_magic.errors import SmRMagicError
from sm_r_magic.workflow import definition as d
from sm_r_magic.backends import folder_executions as executions
from sm_r_magic.workflow import expressions, graph, names
from sm_r_magic.backends.local_registry import LocalModelRegistry
from sm_r_magic.workflow.retarget import retarget

from .support.moto_server import ACCOUNT, BUCKET, IMAGE, ROLE, capture, count_writes, put_log_events, s3_keys
from .support.rlang import r_output
from .test_pipeline_local import EVALUATE, FIT, PREP

CONDITION = "evaluate.evaluation/evaluation.json:regression_metrics.rmse.value <= 3.5"
DATA = "s3://data-bucket/mtcars"
OUT = f"s3://{BUCKET}/sm-r-magic/output"
CODE = f"s3://{BUCKET}/sm-r-magic/sourcedir/{'a' * 64}/sourcedir.tar.gz"
PREP_JOB, FIT_JOB, EVAL_JOB = "prep-20270101-000000-aaaa", "fit-20270101-000001-bbbb", "evaluate-20270101-000002-cccc"
WAIT = 300  # seconds: a generous bound for R jobs on a busy machine
INFERENCE = "model_fn <- function(model_dir) readRDS(file.path(model_dir, 'model.rds'))\n"


class OperationStubber(Stubber):
    """botocore's Stubber for the named operations only (moto 5.2.5 answers them with HTTP 500); every other
    call of the client still goes over HTTP to moto."""

    def __init__(self, client, *operations):
        super().__init__(client)
        self.operations = operations
        self.service = client.meta.service_model.service_id.hyphenize()

    def _events(self):
        for operation in self.operations:
            yield (f"before-parameter-build.{self.service}.{operation}", self._assert_expected_params,
                   f"{self._expected_params_event_id}-{operation}")
            yield f"before-call.{self.service}.{operation}", self._get_response_handler, f"{self._event_id}-{operation}"

    def activate(self):
        for event, handler, unique_id in self._events():
            self.client.meta.events.register_first(event, handler, unique_id=unique_id)

    def deactivate(self):
        for event, handler, unique_id in self._events():
            self.client.meta.events.unregister(event, handler, unique_id=unique_id)


def sagemaker_cells():
    """The issue's three cells as the sagemaker backend sent them (s3:// everywhere, its image and role)."""
    prep = spec.processing_request(job_name=PREP_JOB, image=IMAGE, role=ROLE, code_uri=CODE,
                                   inputs={"raw": f"{DATA}/mtcars.csv"},
                                   outputs={"train": f"{OUT}/{PREP_JOB}/train", "test": f"{OUT}/{PREP_JOB}/test"})
    fit = spec.training_request(job_name=FIT_JOB, image=IMAGE, role=ROLE, code_uri=CODE,
                                channels={"train": f"{OUT}/{PREP_JOB}/train"},
                                hyperparameters={"formula": "mpg ~ wt + hp"}, output_path=OUT)
    ev = spec.processing_request(job_name=EVAL_JOB, image=IMAGE, role=ROLE, code_uri=CODE,
                                 inputs={"model": f"{OUT}/{FIT_JOB}/output/model.tar.gz",
                                         "test": f"{OUT}/{PREP_JOB}/test/test.csv"},
                                 outputs={"evaluation": f"{OUT}/{EVAL_JOB}/evaluation"})
    return [{"kind": "processing", "request": prep}, {"kind": "training", "request": fit},
            {"kind": "processing", "request": ev}]


def sagemaker_definition(**kwargs):
    return d.build(sagemaker_cells(), condition=CONDITION, register="mtcars-models", **kwargs)


def moto_execution(server, arn):
    pipeline = arn.split(":pipeline/", 1)[1].split("/", 1)[0]
    return server.sagemaker().pipelines[pipeline].pipeline_executions[arn]


def every_string(obj):
    if isinstance(obj, dict):
        for value in obj.values():
            yield from every_string(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from every_string(value)
    elif isinstance(obj, str):
        yield obj


def resolved(step, execution_id="exec12345678"):
    """A step's Arguments with every expression evaluated as SageMaker would for this execution."""
    outputs = {name: {"ProcessingOutputConfig": {"Outputs": [
        {"OutputName": o, "S3Output": {"S3Uri": f"{OUT}/{execution_id}/{name}/{o}"}} for o in outs]}}
        for name, outs in (("prep", ("train", "test")), ("evaluate", ("evaluation",)))}
    ctx = expressions.Context(
        steps={**outputs, "fit": {"ModelArtifacts": {"S3ModelArtifacts": f"{OUT}/{execution_id}/fit/m/model.tar.gz"},
                                  "TrainingJobName": "fit-x", "OutputDataConfig": {"S3OutputPath": OUT}}},
        parameters={"raw": f"{DATA}/mtcars.csv"}, execution={"PipelineExecutionId": execution_id})
    return expressions.resolve(step["Arguments"], ctx)


def steps_by_name(definition):
    return {name: step for name, (step, _, _) in graph.all_steps(definition).items()}


# -- upsert, start, the requests -----------------------------------------------------------------------------
def test_upsert_creates_then_updates_and_starts_with_parameters(sm, moto_server, tmp_path):
    definition = sagemaker_definition()
    creates, updates, starts = (capture(sm, op) for op in
                                ("CreatePipeline", "UpdatePipeline", "StartPipelineExecution"))
    first = sm.start_pipeline("mtcars", definition, {"raw": f"{DATA}/new.csv"})
    assert len(creates) == 1 and updates == []
    assert creates[0]["PipelineName"] == "mtcars" and creates[0]["RoleArn"] == ROLE
    assert json.loads(creates[0]["PipelineDefinition"]) == definition
    assert starts[0]["PipelineName"] == "mtcars"
    assert starts[0]["PipelineParameters"] == [{"Name": "raw", "Value": f"{DATA}/new.csv"}]
    assert first.kind == "pipeline" and first.pipeline_name == "mtcars" and len(first.name) == 12
    assert first.status == "Succeeded"  # moto: at once
    assert first.parameters == {"raw": f"{DATA}/new.csv"}
    assert first.definition == definition

    # the same name again: CreatePipeline is refused (the name is taken), UpdatePipeline sends the same
    # definition and role; parameters not given keep their defaults (SageMaker fills them in)
    changed = sagemaker_definition(cache="1d")
    second = sm.start_pipeline("mtcars", changed)
    assert len(creates) == 2 and len(updates) == 1
    assert updates[0]["RoleArn"] == ROLE and json.loads(updates[0]["PipelineDefinition"]) == changed
    assert "PipelineParameters" not in starts[1]
    assert second.name != first.name and second.definition == changed and first.definition == definition
    assert sm.pipeline_definition("mtcars") == changed
    assert sm.sm.describe_pipeline(PipelineName="mtcars")["RoleArn"] == ROLE

    # a local file given for a data parameter is staged like a cell's --input: content-addressed, uploaded
    csv = tmp_path / "mtcars-2027.csv"
    csv.write_text("mpg,wt\n21,2.6\n")
    third = sm.start_pipeline("mtcars", definition, {"raw": str(csv)})
    sha = hashlib.sha256(csv.read_bytes()).hexdigest()
    key = f"sm-r-magic/data/{sha}/mtcars-2027.csv"
    assert third.parameters == {"raw": f"s3://{BUCKET}/{key}"}
    assert key in s3_keys(moto_server)


def test_bad_input_is_one_line_and_creates_nothing(sm, moto_server, tmp_path):
    definition = sagemaker_definition()
    calls = [capture(sm, op) for op in ("CreatePipeline", "UpdatePipeline", "StartPipelineExecution")]

    def refused(match, name="mtcars", defn=definition, parameters=None):
        with pytest.raises(SmRMagicError, match=match) as info:
            sm.start_pipeline(name, defn, parameters)
        assert "\n" not in str(info.value)

    refused("invalid pipeline name", name="mtcars pipeline")
    refused(r"unknown pipeline parameter\(s\) rwa: this pipeline's parameters are raw", parameters={"rwa": "x"})
    refused("pipeline parameter raw: .*missing.csv does not exist", parameters={"raw": str(tmp_path / "missing.csv")})
    # a step SageMaker would refuse only when it runs is refused now, naming the step
    bad = copy.deepcopy(definition)
    steps_by_name(bad)["fit"]["Arguments"]["ResourceConfig"]["InstanceType"] = "ml.m5.huge"
    refused("pipeline step fit: .*ml.m5.huge.* is not a SageMaker", defn=bad)
    no_role = copy.deepcopy(definition)
    del steps_by_name(no_role)["prep"]["Arguments"]["RoleArn"]
    refused("pipeline step prep: .*RoleArn is missing", defn=no_role)
    cyclic = copy.deepcopy(definition)
    steps_by_name(cyclic)["prep"]["DependsOn"] = ["evaluate"]
    refused("depend on each other", defn=cyclic)
    assert calls == [[], [], []]
    assert sm.sm.list_pipelines()["PipelineSummaries"] == []
    assert s3_keys(moto_server) == []


# -- executions after a restart --------------------------------------------------------------------------------
def test_executions_are_listed_and_attached_by_a_new_backend_object(sm, moto_server, settings):
    definition = sagemaker_definition()
    a1 = sm.start_pipeline("mtcars", definition, {"raw": f"{DATA}/a1.csv"})
    a2 = sm.start_pipeline("mtcars", definition)
    b1 = sm.start_pipeline("other", definition)

    restarted = SageMakerBackend(settings)  # a new kernel: nothing remembered
    assert [e.name for e in restarted.list_pipeline_executions("mtcars")] == [a1.name, a2.name]  # oldest first
    assert {(e.pipeline_name, e.name) for e in restarted.list_pipeline_executions()} == {
        ("mtcars", a1.name), ("mtcars", a2.name), ("other", b1.name)}

    again = SageMakerBackend(settings).attach(a1.name)
    assert again.kind == "pipeline" and (again.pipeline_name, again.name) == ("mtcars", a1.name)
    assert again.status == "Succeeded" and again.parameters == {"raw": f"{DATA}/a1.csv"}
    assert again.definition == definition
    desc = again.describe()
    assert desc["PipelineExecutionArn"].endswith(f"pipeline/mtcars/execution/{a1.name}")
    by_arn = SageMakerBackend(settings).attach(desc["PipelineExecutionArn"])
    assert (by_arn.pipeline_name, by_arn.name) == ("mtcars", a1.name)
    # the API's attach finds it too, whichever backend is configured
    settings.backend = "local"
    assert sm_r_magic.attach(b1.name, backend="sagemaker").pipeline_name == "other"

    with pytest.raises(SmRMagicError, match="no SageMaker job, endpoint or pipeline execution named zzzzzzzzzzzz"):
        SageMakerBackend(settings).attach("zzzzzzzzzzzz")
    with pytest.raises(SmRMagicError, match="has no execution zzzzzzzzzzzz"):
        SageMakerBackend(settings).describe_pipeline_execution("mtcars", "zzzzzzzzzzzz")
    with pytest.raises(SmRMagicError, match="no SageMaker pipeline named nope"):
        SageMakerBackend(settings).list_pipeline_executions("nope")


def test_job_from_arn(sm):
    job = sm.job_from_arn("arn:aws:sagemaker:us-east-1:123456789012:training-job/pipelines-abc-fit-x1")
    assert (job.kind, job.name) == ("training", "pipelines-abc-fit-x1")
    job = sm.job_from_arn("arn:aws:sagemaker:us-east-1:123456789012:processing-job/pipelines-abc-prep-x2")
    assert (job.kind, job.name) == ("processing", "pipelines-abc-prep-x2")
    for bad in ("local:training-job/fit-1", "arn:aws:sagemaker:us-east-1:123456789012:model/m", "fit-1"):
        with pytest.raises(SmRMagicError, match="is not the ARN of a SageMaker training or processing job"):
            sm.job_from_arn(bad)


# -- watching an execution -----------------------------------------------------------------------------------
def ago(seconds):
    """A moment in the past as moto keeps job times (naive UTC)."""
    return (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)).replace(tzinfo=None)


def step_jobs(sm, execution, definition, names_kinds=(("prep", "processing"), ("fit", "training"))):
    """Jobs in moto standing for the steps' jobs: each step's resolved Arguments, named as SageMaker names a
    pipeline's jobs -> {step: (job name, job ARN)}."""
    steps = steps_by_name(definition)
    jobs = {}
    for step, kind in names_kinds:
        name = f"pipelines-{execution.name}-{step}-a1b2c3d4e5"
        key = "TrainingJobName" if kind == "training" else "ProcessingJobName"
        sm.submit(kind, {key: name, **resolved(steps[step])})
        arn = sm.describe_job(kind, name)["TrainingJobArn" if kind == "training" else "ProcessingJobArn"]
        jobs[step] = (name, arn)
    return jobs


def moto_job(server, kind, name):
    backend = server.sagemaker()
    return (backend.training_jobs if kind == "training" else backend.processing_jobs)[name]


def step_record(name, status, job_arn=None, kind="training", ended=True):
    record = {"StepName": name, "StepDisplayName": name, "StepStatus": status, "AttemptCount": 1,
              "StartTime": datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)}
    if ended:
        record["EndTime"] = datetime.datetime(2027, 1, 1, 0, 5, tzinfo=datetime.timezone.utc)
    if job_arn:
        record["Metadata"] = {("TrainingJob" if kind == "training" else "ProcessingJob"): {"Arn": job_arn}}
    return record


def test_watching_an_execution_costs_what_watching_a_job_costs(sm, moto_server, monkeypatch):
    """Steps in the definition's order, each step's job a normal Job with its CloudWatch logs; with the describe
    cache, repeated snapshots (a view redrawing) ask SageMaker nothing new, and once the execution has ended and
    its steps' logs were read to the end, watching it costs no call at all."""
    monkeypatch.setattr(SageMakerBackend, "describe_ttl", 600.0)  # far longer than this test: no verdict on speed
    monkeypatch.setattr(SageMakerBackend, "log_interval", 600.0)
    definition = sagemaker_definition()
    execution = sm.start_pipeline("mtcars", definition)
    arn = sm.pipelines.execution_arn("mtcars", execution.name)
    moto_execution(moto_server, arn).pipeline_execution_status = "Executing"
    jobs = step_jobs(sm, execution, definition)
    moto_job(moto_server, "processing", jobs["prep"][0]).processing_end_time = ago(600)
    moto_job(moto_server, "training", jobs["fit"][0]).training_job_status = "InProgress"
    logs = moto_server.client("logs")
    put_log_events(logs, "/aws/sagemaker/ProcessingJobs", f"{jobs['prep'][0]}/algo-1-1", ["split 32 rows"])
    put_log_events(logs, "/aws/sagemaker/TrainingJobs", f"{jobs['fit'][0]}/algo-1-1", ["fitting mpg ~ wt + hp"])
    sm.forget()

    running = {"PipelineExecutionSteps": [step_record("fit", "Executing", jobs["fit"][1], ended=False),
                                          step_record("prep", "Succeeded", jobs["prep"][1], kind="processing")]}
    with OperationStubber(sm.sm, "ListPipelineExecutionSteps") as stub:
        stub.add_response("list_pipeline_execution_steps", running, {"PipelineExecutionArn": arn})
        first = execution.snapshot()
        calls = sm.api_calls
        for _ in range(5):  # a view redrawing: everything comes from the cache
            snap = execution.snapshot()
        assert sm.api_calls == calls
        stub.assert_no_pending_responses()  # the steps were listed once
    assert first.status == "Executing" and not first.terminal
    assert [s["StepName"] for s in snap.steps] == ["prep", "fit"]  # the definition's order
    assert [s["StepStatus"] for s in snap.steps] == ["Succeeded", "Executing"]
    assert ("prep", "fit", "") in snap.edges and ("condition", "register", "if") in snap.edges
    assert "[prep] split 32 rows" in snap.log_lines and "[fit] fitting mpg ~ wt + hp" in snap.log_lines
    fit = execution.step_job("fit")
    assert (fit.kind, fit.name, fit.status) == ("training", jobs["fit"][0], "InProgress")

    # the execution ends; time passes (the cache expires)
    moto_execution(moto_server, arn).pipeline_execution_status = "Succeeded"
    fit_job = moto_job(moto_server, "training", jobs["fit"][0])
    fit_job.training_job_status, fit_job.training_end_time = "Completed", ago(600)
    put_log_events(moto_server.client("logs"), "/aws/sagemaker/TrainingJobs", f"{jobs['fit'][0]}/algo-1-1",
                   ["model saved"])
    sm.forget()
    done = {"PipelineExecutionSteps": [step_record(n, "Succeeded", jobs[n][1], kind=k) for n, k in
                                       (("fit", "training"), ("prep", "processing"))]}
    with OperationStubber(sm.sm, "ListPipelineExecutionSteps") as stub:
        stub.add_response("list_pipeline_execution_steps", done, {"PipelineExecutionArn": arn})
        final = execution.snapshot()
        stub.assert_no_pending_responses()
        calls = sm.api_calls
        sm.forget()  # however long it is watched from now on
        for _ in range(5):
            again = execution.snapshot()
        assert execution.logs().count("[fit] model saved") == 1
        assert sm.api_calls == calls  # no call at all: a second steps listing would have failed the stub too
    assert final.terminal and final.status == "Succeeded" == again.status
    assert [s["StepStatus"] for s in again.steps] == ["Succeeded", "Succeeded"]
    assert "[fit] model saved" in again.log_lines


def test_a_failed_execution_names_the_failed_step_and_its_r_error(sm, moto_server):
    definition = sagemaker_definition()
    execution = sm.start_pipeline("mtcars", definition)
    arn = sm.pipelines.execution_arn("mtcars", execution.name)
    jobs = step_jobs(sm, execution, definition)
    fit_job = moto_job(moto_server, "training", jobs["fit"][0])
    r_error = "Error in eval(predvars, data, env): object 'hp' not found\nCalls: lm -> eval -> eval"
    fit_job.training_job_status, fit_job.failure_reason = "Failed", r_error
    moto_execution(moto_server, arn).pipeline_execution_status = "Failed"
    steps = {"PipelineExecutionSteps": [
        {**step_record("fit", "Failed", jobs["fit"][1]), "FailureReason": "ClientError: AlgorithmError: see logs"},
        step_record("prep", "Succeeded", jobs["prep"][1], kind="processing")]}
    with OperationStubber(sm.sm, "ListPipelineExecutionSteps") as stub:
        stub.add_response("list_pipeline_execution_steps", steps, {"PipelineExecutionArn": arn})
        assert execution.status == "Failed"
        expected = f"step fit (training job {jobs['fit'][0]}) failed: {r_error}"
        assert execution.failure_reason == expected
        assert execution.describe(refresh=True)["FailureReason"] == expected  # worked out once
        assert "Failed · 1/2 steps succeeded" in execution.summary()  # of the steps that ran
    assert "object 'hp' not found" in execution.summary()


def test_stop_through_the_stubber(sm, moto_server):
    """moto 5.2.5 does not implement StopPipelineExecution: botocore's Stubber checks our request; moto's
    in-process execution is set Stopped when the (stubbed) call is made, as SageMaker would."""
    execution = sm.start_pipeline("mtcars", sagemaker_definition())
    arn = sm.pipelines.execution_arn("mtcars", execution.name)
    moto_execution(moto_server, arn).pipeline_execution_status = "Executing"
    assert execution.status == "Executing"

    def stopped(**kwargs):
        moto_execution(moto_server, arn).pipeline_execution_status = "Stopped"

    sm.sm.meta.events.register("after-call.sagemaker.StopPipelineExecution", stopped)
    with OperationStubber(sm.sm, "StopPipelineExecution") as stub:
        stub.add_response("stop_pipeline_execution", {"PipelineExecutionArn": arn}, {"PipelineExecutionArn": arn})
        assert execution.stop(timeout=60) is execution
        assert execution.status == "Stopped"
        # an execution that has ended cannot be stopped: no error, False
        stub.add_client_error("stop_pipeline_execution", "ValidationException",
                              "Pipeline execution with ARN is in Stopped status and cannot be stopped",
                              expected_params={"PipelineExecutionArn": arn})
        assert sm.stop_pipeline_execution("mtcars", execution.name) is False
        stub.assert_no_pending_responses()


# -- the model registry ----------------------------------------------------------------------------------------
def package_request(group, n, approval=None, report=None):
    """A CreateModelPackage request as a RegisterModel step makes it (resolved), version n's model."""
    request = {"ModelPackageGroupName": group, "InferenceSpecification": {
        "Containers": [{"Image": IMAGE, "ModelDataUrl": f"{OUT}/exec{n}/fit/m/output/model.tar.gz",
                        "Environment": {"SAGEMAKER_SUBMIT_DIRECTORY": CODE, "SAGEMAKER_PROGRAM": "inference.R"}}],
        "SupportedContentTypes": ["text/csv", "application/json"],
        "SupportedResponseMIMETypes": ["text/csv", "application/json"]},
        "MetadataProperties": {"GeneratedBy": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:pipeline/mtcars/execution/e{n}"}}
    if approval:
        request["ModelApprovalStatus"] = approval
    if report:
        request["ModelMetrics"] = {"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                                   "S3Uri": report}}}
    return request


def test_registry_groups_versions_newest_first_and_approval(sm, moto_server, monkeypatch):
    groups, packages, lists, updates = (capture(sm, op) for op in (
        "CreateModelPackageGroup", "CreateModelPackage", "ListModelPackages", "UpdateModelPackage"))
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="reports")
    for n, rmse in ((1, 3.1), (2, 2.9), (3, 3.3)):
        s3.put_object(Bucket="reports", Key=f"e{n}/evaluation.json",
                      Body=json.dumps({"regression_metrics": {"rmse": {"value": rmse}}}))
    first = sm.register_model_package(package_request("mtcars-models", 1, report="s3://reports/e1/evaluation.json"))
    assert (first["ModelPackageGroupName"], first["ModelPackageVersion"]) == ("mtcars-models", 1)
    assert first["ModelApprovalStatus"] == "PendingManualApproval"  # SageMaker's default
    assert first["Metrics"] == {"regression_metrics": {"rmse": {"value": 3.1}}}
    for n in (2, 3):
        sm.register_model_package(package_request("mtcars-models", n, report=f"s3://reports/e{n}/evaluation.json"))
    assert len(groups) == 1  # made when missing, once
    assert packages[0] == {**package_request("mtcars-models", 1, report="s3://reports/e1/evaluation.json"),
                           "ModelApprovalStatus": "PendingManualApproval"}  # said out loud, not left to a default

    listed = sm.list_model_packages("mtcars-models")
    assert lists[-1] == {"ModelPackageGroupName": "mtcars-models", "SortBy": "CreationTime", "SortOrder": "Descending"}
    assert [p["ModelPackageVersion"] for p in listed] == [3, 2, 1]  # newest first
    assert [p["Metrics"]["regression_metrics"]["rmse"]["value"] for p in listed] == [3.3, 2.9, 3.1]
    assert listed[1]["MetadataProperties"]["GeneratedBy"].endswith("/execution/e2")
    assert listed[0]["InferenceSpecification"]["Containers"][0]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.R"

    approved = sm.update_model_package_approval("mtcars-models", 2, "Approved")
    assert approved["ModelApprovalStatus"] == "Approved"
    sm.update_model_package_approval("mtcars-models", 3, "Rejected", description="RMSE went up")
    assert updates[-1] == {"ModelPackageArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/mtcars-models/3",
                           "ModelApprovalStatus": "Rejected", "ApprovalDescription": "RMSE went up"}
    assert sm.describe_model_package("mtcars-models", 3)["ModelApprovalStatus"] == "Rejected"
    assert sm.describe_model_package("mtcars-models", 2)["ModelApprovalStatus"] == "Approved"
    assert sm.latest_approved_model_package("mtcars-models")["ModelPackageVersion"] == 2
    assert [p["ModelApprovalStatus"] for p in sm.list_model_packages("mtcars-models")] == [
        "Rejected", "Approved", "PendingManualApproval"]

    # an existing group is left as it is (moto would silently replace it: we never ask it to)
    by_hand = moto_server.client("sagemaker")
    by_hand.create_model_package_group(ModelPackageGroupName="kept", ModelPackageGroupDescription="by hand")
    sm.register_model_package(package_request("kept", 1, approval="Approved"))
    assert len(groups) == 1
    kept = by_hand.describe_model_package_group(ModelPackageGroupName="kept")
    assert kept["ModelPackageGroupDescription"] == "by hand"

    for call, message in [
        (lambda: sm.describe_model_package("mtcars-models", 7), r"has no version 7 \(versions: 3, 2, 1\)"),
        (lambda: sm.list_model_packages("nope"), r"no model package group 'nope' .*\(groups: .*mtcars-models"),
        (lambda: sm.update_model_package_approval("mtcars-models", 1, "Yes"), "approval status 'Yes': use Approved"),
        (lambda: sm.update_model_package_approval("mtcars-models", 9, "Approved"), "has no version 9"),
        (lambda: sm.list_model_packages("bad name"), "invalid model package group name 'bad name'"),
        (lambda: sm.register_model_package({"ModelPackageGroupName": "x", "InferenceSpecification": {}}),
         "needs InferenceSpecification.Containers with an Image"),
    ]:
        with pytest.raises(SmRMagicError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    assert sm.describe_model_package("mtcars-models", 1)["ModelApprovalStatus"] == "PendingManualApproval"
    # should SageMaker spell a version's ARN otherwise than package_arn() guesses, the listed ARN is used
    monkeypatch.setattr(sm.registry, "package_arn", lambda group, version: f"arn:aws:sagemaker:x:{ACCOUNT}:nope/1")
    assert sm.describe_model_package("mtcars-models", 2)["ModelApprovalStatus"] == "Approved"


def test_deploying_the_newest_approved_version(sm, moto_server):
    """--model-package GROUP deploys the newest Approved version: CreateModel with that version's own container
    (its image, the model data its pipeline wrote, the environment naming its inference code)."""
    models = capture(sm, "CreateModel")
    sm.register_model_package(package_request("empty-models", 1))  # pending only
    with pytest.raises(SmRMagicError, match=r"no version is Approved \(newest: empty-models/1, PendingManualApproval\): "
                                            r"approve one with %r_approve empty-models/1"):
        sm.latest_approved_model_package("empty-models")
    with pytest.raises(SmRMagicError, match="no version is Approved"):
        sm_r_magic.deploy(model_package="empty-models", backend="sagemaker")
    moto_server.client("sagemaker").create_model_package_group(ModelPackageGroupName="no-versions")
    with pytest.raises(SmRMagicError, match="no-versions: the group has no versions yet"):
        sm.latest_approved_model_package("no-versions")
    with pytest.raises(SmRMagicError, match="the group has no versions yet"):
        sm_r_magic.deploy(model_package="no-versions", backend="sagemaker")

    for n, approval in ((1, "Approved"), (2, "Approved"), (3, "Rejected"), (4, "PendingManualApproval")):
        sm.register_model_package(package_request("mtcars-models", n, approval=approval))
    assert sm.latest_approved_model_package("mtcars-models")["ModelPackageVersion"] == 2
    with pytest.raises(SmRMagicError, match="mtcars-models/3 is Rejected"):
        sm_r_magic.deploy(model_package="mtcars-models/3", backend="sagemaker")
    assert models == []  # nothing created by any of that

    predictor = sm_r_magic.deploy(model_package="mtcars-models", backend="sagemaker", serverless="2048,5", workers=2)
    (sent,) = models
    assert sent["PrimaryContainer"] == {
        "Image": IMAGE, "ModelDataUrl": package_request("mtcars-models", 2)["InferenceSpecification"][
            "Containers"][0]["ModelDataUrl"],
        "Environment": {"SAGEMAKER_SUBMIT_DIRECTORY": CODE, "SAGEMAKER_PROGRAM": "inference.R",
                        "SM_R_MAGIC_WORKERS": "2"}}
    assert sent["ExecutionRoleArn"] == ROLE
    assert predictor.status == "InService" and predictor.endpoint_name.startswith("mtcars-models-")
    assert sm.endpoint_model_request(predictor.endpoint_name)["PrimaryContainer"]["ModelDataUrl"] == \
        sent["PrimaryContainer"]["ModelDataUrl"]
    moto_server.seed_endpoint_results([{"Body": "22.6\n", "ContentType": "text/csv"}])
    assert predictor.predict({"wt": [2.5], "hp": [120]}, content_type="text/csv") == [22.6]
    sm_r_magic.deploy(model_package="mtcars-models/4", backend="sagemaker").delete()  # pending: by number only
    assert models[-1]["PrimaryContainer"]["ModelDataUrl"].endswith("/exec4/fit/m/output/model.tar.gz")
    predictor.delete()
    assert sm.sm.list_models()["Models"] == []


# -- retargeting a pipeline built from local cells -------------------------------------------------------------
def run_local_cells(csv):
    """The issue's cells, run as local jobs with this machine's R (local image tag, no role)."""
    prep = sm_r_magic.processing(PREP, name="prep", backend="local", inputs={"raw": str(csv)},
                                 outputs={"train": None, "test": None}, progress="none")
    fit = sm_r_magic.train(FIT, name="fit", backend="local", channels={"train": prep.outputs["train"]},
                           hyperparameters={"formula": "mpg ~ wt + hp"}, progress="none")
    ev = sm_r_magic.processing(EVALUATE, name="evaluate", backend="local", outputs={"evaluation": None},
                               inputs={"model": fit.model_data, "test": prep.outputs["test"]}, progress="none")
    assert [job.status for job in (prep, fit, ev)] == ["Completed"] * 3, [job.failure_reason for job in (prep, fit, ev)]
    return prep, fit, ev


def code_sha(job):
    return {t["Key"]: t["Value"] for t in job.request["Tags"]}["sm-r-magic:sourcedir-sha256"]


def test_a_pipeline_of_local_cells_runs_on_sagemaker_unchanged(sm, moto_server, settings, local_root, tmp_path,
                                                                r_available):
    settings.image, settings.role = "sm-r-magic:latest", ""  # what local cells run with
    csv = tmp_path / "data" / "mtcars.csv"
    csv.parent.mkdir()
    csv.write_text(r_output("write.csv(mtcars, stdout(), row.names = FALSE)"))
    prep, fit, ev = run_local_cells(csv)
    serve = tmp_path / "serve.R"
    serve.write_text(INFERENCE)
    with sourcedir.build(spec.INFERENCE_PROGRAM, INFERENCE) as src:
        inference_sha = src.sha256
    pipe = sm_r_magic.pipeline("mtcars", [prep, fit, ev], condition=CONDITION.replace("3.5", "10"),
                               register="mtcars-models", inference=str(serve), fail_message="RMSE above 10",
                               cache="1d")
    definition = pipe.definition()  # for the backend the cells ran on
    assert any(s.startswith(str(local_root)) for s in every_string(definition))

    settings.image, settings.role = IMAGE, ROLE  # the sagemaker backend's settings
    local = get_backend("local", settings)
    for_sagemaker = pipe.definition(backend="sagemaker")  # a dry run: the inference code stored locally only
    assert s3_keys(moto_server) == []  # naming S3 locations uploads nothing
    moved, staged = retarget(definition, local, sm)
    assert moved == for_sagemaker
    assert [s for s in every_string(moved) if s.startswith((str(tmp_path), "file://"))] == []
    steps, before = steps_by_name(moved), steps_by_name(definition)
    area = f"s3://{BUCKET}/sm-r-magic"

    def code_uri(sha):
        return f"{area}/sourcedir/{sha}/sourcedir.tar.gz"

    for name, job in (("prep", prep), ("evaluate", ev)):
        args = steps[name]["Arguments"]
        assert args["AppSpecification"]["ImageUri"] == IMAGE and args["RoleArn"] == ROLE
        inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in args["ProcessingInputs"]}
        assert inputs["code"] == code_uri(code_sha(job))
        assert args["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/processing/input/code/sourcedir.tar.gz"
    fit_args = steps["fit"]["Arguments"]
    assert fit_args["AlgorithmSpecification"]["TrainingImage"] == IMAGE and fit_args["RoleArn"] == ROLE
    assert json.loads(fit_args["HyperParameters"]["sagemaker_submit_directory"]) == code_uri(code_sha(fit))
    assert fit_args["HyperParameters"]["formula"] == json.dumps("mpg ~ wt + hp")
    assert moved["Parameters"] == [{"Name": "raw", "Type": "String", "DefaultValue":
                                    f"{area}/data/{hashlib.sha256(csv.read_bytes()).hexdigest()}/mtcars.csv"}]
    execution_id = {"Get": "Execution.PipelineExecutionId"}
    train = steps["prep"]["Arguments"]["ProcessingOutputConfig"]["Outputs"][0]
    assert train["OutputName"] == "train" and train["S3Output"]["S3Uri"] == {
        "Std:Join": {"On": "/", "Values": [f"{area}/output", execution_id, "prep", "train"]}}
    assert fit_args["OutputDataConfig"]["S3OutputPath"] == {
        "Std:Join": {"On": "/", "Values": [f"{area}/output", execution_id, "fit"]}}
    container = steps["register"]["Arguments"]["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == IMAGE
    assert container["Environment"] == {"SAGEMAKER_SUBMIT_DIRECTORY": code_uri(inference_sha),
                                        "SAGEMAKER_PROGRAM": "inference.R"}
    # the graph, the references, the condition, the cache: as they were
    assert [s["Name"] for s in moved["Steps"]] == [s["Name"] for s in definition["Steps"]]
    assert fit_args["InputDataConfig"] == before["fit"]["Arguments"]["InputDataConfig"]
    data_inputs = slice(0, 2)  # model and test: references to prep's and fit's outputs
    assert steps["evaluate"]["Arguments"]["ProcessingInputs"][data_inputs] == \
        before["evaluate"]["Arguments"]["ProcessingInputs"][data_inputs]
    assert steps["evaluate"]["PropertyFiles"] == before["evaluate"]["PropertyFiles"]
    for key in ("Conditions", "ElseSteps"):
        assert steps["condition"]["Arguments"][key] == before["condition"]["Arguments"][key]
    assert container["ModelDataUrl"] == {"Get": "Steps.fit.ModelArtifacts.S3ModelArtifacts"}
    assert steps["fit"]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P1D"}

    # valid for SageMaker: the CreatePipeline request, and each step's arguments once resolved
    d.check_create_pipeline("mtcars", moved, ROLE)
    for name, operation in (("prep", "CreateProcessingJob"), ("evaluate", "CreateProcessingJob"),
                            ("fit", "CreateTrainingJob")):
        key = "TrainingJobName" if name == "fit" else "ProcessingJobName"
        names.check_request(operation, {key: f"{name}-x", **resolved(steps[name])})
    names.check_request("CreateModelPackage", resolved(steps["register"]))

    # run(backend="sagemaker") uploads what retargeting staged, content-addressed (each object is the bytes its
    # key names), then creates the pipeline with that definition and starts it
    stored = count_writes(sm)  # (a conditional PutObject of an object already there is refused: not stored)
    creates, updates = capture(sm, "CreatePipeline"), capture(sm, "UpdatePipeline")
    first = pipe.run(backend="sagemaker", wait=False, progress="none")
    assert json.loads(creates[0]["PipelineDefinition"]) == moved and first.status == "Succeeded"
    uploaded = [f"s3://{BUCKET}/{key}" for key in s3_keys(moto_server)]
    assert sorted(uploaded) == sorted(item.uri for item in staged) and stored["written"] == len(staged)
    assert {u for u in uploaded if "/sourcedir/" in u} == {
        code_uri(sha) for sha in (code_sha(prep), code_sha(fit), code_sha(ev), inference_sha)}
    s3 = moto_server.client("s3")
    for uri in uploaded:
        key = uri.split(f"{BUCKET}/", 1)[1]
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == key.split("/")[-2]

    # a second run: the same definition (UpdatePipeline), nothing stored again
    writes = stored["written"]
    second = pipe.run(backend="sagemaker", wait=False, progress="none")
    assert stored["written"] == writes and len(updates) == 1 and json.loads(updates[0]["PipelineDefinition"]) == moved
    assert [e.name for e in pipe.executions(backend="sagemaker")] == [first.name, second.name]

    # a definition built from sagemaker cells needs no retargeting
    built_on_sagemaker = sagemaker_definition()
    assert retarget(built_on_sagemaker, sm, sm) == (built_on_sagemaker, [])

    # What SageMaker was sent runs: the local executor runs that very definition in our container against
    # moto's S3 (code, data and the evaluation report all come from S3, outputs go there per execution).
    folder = executions.start(local, "mtcars-on-s3", moved)
    try:
        answer = executions.wait(folder, timeout=WAIT)
    finally:
        executions.stop(folder)
    assert answer["PipelineExecutionStatus"] == "Succeeded", answer["FailureReason"]
    ran = {s["StepName"]: s for s in answer["Steps"]}
    assert ran["condition"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    version = LocalModelRegistry(local_root).describe("mtcars-models", 1)
    model_data = version["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert model_data.startswith(f"{area}/output/{folder.execution_id}/fit/") and model_data.endswith("model.tar.gz")
    with open(os.path.join(ev.outputs["evaluation"], "evaluation.json")) as fh:
        cell_rmse = json.load(fh)["regression_metrics"]["rmse"]["value"]
    assert version["Metrics"]["regression_metrics"]["rmse"]["value"] == pytest.approx(cell_rmse)



def local_request_definition(tmp_path, local_root):
    """A definition as local cells make it, with the less common places a local path can be: a user-chosen
    local output location, an s3:// output, a local checkpoint folder, a literal local channel, a local
    model.tar.gz and an ECR image of its own in the register step, a container path as inference code."""
    code = local_root / "sourcedir" / ("c" * 64) / "sourcedir.tar.gz"
    code.parent.mkdir(parents=True)
    code.write_bytes(b"not really a tar.gz, but bytes to hash")
    folder = tmp_path / "lookup"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("a\n1\n")
    (folder / "sub" / "b.csv").write_text("b\n2\n")
    model = tmp_path / "model.tar.gz"
    with __import__("tarfile").open(model, "w:gz") as tar:
        tar.add(folder / "a.csv", arcname="a.csv")
    prep = spec.processing_request(job_name="prep-20270101-000000-aaaa", image="sm-r-magic:latest", code_uri=str(code),
                                   inputs={"lookup": str(folder)},
                                   outputs={"mine": str(tmp_path / "my-results"), "s3": "s3://kept/out"})
    fit = spec.training_request(job_name="fit-20270101-000001-bbbb", image="sm-r-magic:latest", code_uri=str(code),
                                channels={"train": "file://" + str(folder / "a.csv")}, hyperparameters={},
                                output_path=str(local_root / "output"), checkpoint_uri=str(tmp_path / "ckpt"))
    register = d.Register(group="g", image="999999999999.dkr.ecr.eu-west-1.amazonaws.com/custom:1",
                          code_uri="/opt/ml/model/code/serve.tar.gz")
    definition = d.build([{"kind": "processing", "request": prep}, {"kind": "training", "request": fit}],
                         register=register)
    # a local model.tar.gz named literally (a RegisterModel written by hand)
    steps_by_name(definition)["register"]["Arguments"]["InferenceSpecification"]["Containers"].append(
        {"Image": "sm-r-magic:latest", "ModelDataUrl": str(model)})
    return definition, code, folder, model


def test_every_local_location_is_moved_and_everything_else_is_kept(sm, moto_server, settings, local_root, tmp_path):
    definition, code, folder, model = local_request_definition(tmp_path, local_root)
    local = get_backend("local", settings)
    moved, staged = retarget(definition, local, sm)
    assert [s for s in every_string(moved) if s.startswith((str(tmp_path), "file://"))] == []
    steps = steps_by_name(moved)
    area = f"s3://{BUCKET}/sm-r-magic"
    outputs = {o["OutputName"]: o["S3Output"]["S3Uri"]
               for o in steps["prep"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]}
    execution_id = {"Get": "Execution.PipelineExecutionId"}
    assert outputs["mine"] == {"Std:Join": {"On": "/", "Values": [f"{area}/output", execution_id, "prep", "mine"]}}
    assert outputs["s3"] == {"Std:Join": {"On": "/", "Values": ["s3://kept/out", execution_id]}}  # s3:// stays
    parameters = {p["Name"]: p["DefaultValue"] for p in moved["Parameters"]}
    assert parameters["lookup"].startswith(f"{area}/data/") and parameters["lookup"].endswith("/lookup/")
    assert parameters["train"].startswith(f"{area}/data/") and parameters["train"].endswith("/a.csv")
    assert steps["fit"]["Arguments"]["CheckpointConfig"] == {"S3Uri": f"{area}/checkpoints/fit",
                                                             "LocalPath": "/opt/ml/checkpoints"}
    mine, by_hand = steps["register"]["Arguments"]["InferenceSpecification"]["Containers"]
    assert mine["Image"] == "999999999999.dkr.ecr.eu-west-1.amazonaws.com/custom:1"  # an ECR image of its own
    assert mine["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code/serve.tar.gz"  # in the container
    assert by_hand["Image"] == IMAGE and by_hand["ModelDataUrl"].startswith(f"{area}/models/")
    code_sha = hashlib.sha256(code.read_bytes()).hexdigest()
    assert steps["prep"]["Arguments"]["ProcessingInputs"][-1]["S3Input"]["S3Uri"] == \
        f"{area}/sourcedir/{code_sha}/sourcedir.tar.gz"
    # one staged item per distinct location: the code twice named, staged once
    assert sorted(i.source for i in staged) == sorted([str(code), str(folder), str(folder / "a.csv"), str(model)])
    uploaded = sm.upload(None, staged)
    assert f"{parameters['lookup']}sub/b.csv" in uploaded and sm.upload(None, staged) == []


def test_what_cannot_be_retargeted_is_one_line_and_uploads_nothing(sm, moto_server, settings, local_root, tmp_path):
    definition, code, _, _ = local_request_definition(tmp_path, local_root)
    local = get_backend("local", settings)
    settings.image = "sm-r-magic:latest"
    with pytest.raises(SmRMagicError, match=r"no SageMaker image \('sm-r-magic:latest' is a local tag\)"):
        retarget(definition, local, sm)
    settings.image = IMAGE
    code.unlink()
    with pytest.raises(SmRMagicError, match=r"step prep: its code .*sourcedir.tar.gz is gone .*run its cell again"):
        retarget(definition, local, sm)
    broken = copy.deepcopy(definition)
    steps_by_name(broken)["prep"]["Arguments"]["ProcessingInputs"][0]["S3Input"]["S3Uri"] = str(tmp_path / "gone")
    with pytest.raises(SmRMagicError, match="step prep input lookup: .*gone does not exist"):
        retarget(broken, local, sm)
    assert s3_keys(moto_server) == []
