"""Pipelines on SageMaker, for the sagemaker backend: upsert (CreatePipeline, else UpdatePipeline with the same
definition and the backend's role), StartPipelineExecution with parameters, and the answers the execution
handle (pipeline/execution.py) reads, in the shapes the local backends give: DescribePipelineExecution (plus
its parameters, and for a failed execution the failed step's own error), ListPipelineExecutionSteps, the
definition an execution runs, stop, listing, finding an execution by id after a restart.

Watching an execution costs what watching a job costs: descriptions and step lists go through the backend's
describe cache (reused for a while, longer the longer it is watched); what cannot change (an execution's
parameters and definition, the steps of an ended execution) is asked once. A step's job is described once when
the step has ended, so its CloudWatch logs are read to the end and then no more (SageMakerBackend.read_logs).
"""

import json
import os
import re
import threading

from .. import aws
from ..errors import SmRMagicError
from ..workflow import definition as definitions
from ..workflow import graph, names
from ..workflow.execution import EXECUTION_TERMINAL, PipelineExecution
from ..uris import is_s3
from .sagemaker_jobs import LIST_LIMIT, job_of_arn
from .sagemaker_part import SageMakerPart

EXECUTION_ARN = re.compile(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:pipeline/([^/]+)/execution/([A-Za-z0-9]+)")
EXECUTION_ID = re.compile(r"[a-z0-9]{12}")
STEP_TERMINAL = ("Stopped", "Failed", "Succeeded")
ALREADY_EXISTS = "must be unique within"  # CreatePipeline's ValidationException for a name in use
RECENT_PIPELINES = 5  # list_executions() without a name looks into the pipelines run most recently


def step_job(step):
    """(kind, job name) of the job a listed step ran, else None."""
    metadata = step.get("Metadata") or {}
    job = metadata.get("TrainingJob") or metadata.get("ProcessingJob") or {}
    return job_of_arn(job.get("Arn"))


class SageMakerPipelines(SageMakerPart):
    def __init__(self, backend):
        super().__init__(backend)
        self._lock = threading.Lock()
        self._arns = {}           # (pipeline, execution id) -> execution ARN
        self._fixed = {}          # (what, execution ARN) -> an answer that cannot change any more
        self._ended_jobs = set()  # (kind, name) of step jobs described once after their step ended

    def _remember(self, arn):
        match = EXECUTION_ARN.fullmatch(arn)
        if match:
            with self._lock:
                self._arns[(match.group(1), match.group(2))] = arn
        return arn

    # -- upsert and start --------------------------------------------------------------------------------
    def check(self, pipeline_name, definition):
        """Everything SageMaker would refuse about this pipeline, before anything is created: the name, the
        graph, the CreatePipeline request (botocore's model) and each job step's arguments."""
        from ..workflow.retarget import check_step_arguments

        names.check_pipeline_name(pipeline_name)
        graph.check(definition)
        definitions.check_create_pipeline(pipeline_name, definition, self.backend.role())
        check_step_arguments(definition)

    def upsert(self, pipeline_name, definition):
        """CreatePipeline, or UpdatePipeline with the same definition and role when the name is taken; the
        pipeline's ARN."""
        from botocore.exceptions import ClientError

        request = {"PipelineName": pipeline_name, "PipelineDefinition": definitions.to_json(definition),
                   "RoleArn": self.backend.role()}
        try:
            return self.sm.create_pipeline(**request)["PipelineArn"]
        except ClientError as exc:
            if not (aws.error_code(exc) == "ValidationException" and ALREADY_EXISTS in aws.error_message(exc)):
                raise self.backend.refusal("create the pipeline", exc) from None
        return self.backend.call("update the pipeline", self.sm.update_pipeline, **request)["PipelineArn"]

    def parameter_values(self, definition, parameters):
        """PipelineParameters for the given values, and the local data to upload for them. An unknown name is
        one line; a local path given for a data parameter (its default is an s3:// URI) is staged to S3 like a
        cell's --input; parameters not given keep their defaults (SageMaker fills them in)."""
        declared, given = definitions.declared_parameters(definition, parameters)
        values, staged = [], []
        for name, value in given.items():
            value = _text(value)
            default = declared[name].get("DefaultValue")
            if isinstance(default, str) and is_s3(default) and not is_s3(value):
                item = self.backend.data_uri(value, f"pipeline parameter {name}")
                staged.append(item)
                value = item.uri
            values.append({"Name": name, "Value": value})
        return values, staged

    def start(self, pipeline_name, definition, parameters=None):
        """Check, upload the local data of the parameters, upsert, StartPipelineExecution -> PipelineExecution."""
        self.check(pipeline_name, definition)
        values, staged = self.parameter_values(definition, parameters)
        if staged:
            self.backend.upload(None, staged)
        self.upsert(pipeline_name, definition)
        request = {"PipelineName": pipeline_name}
        if values:
            request["PipelineParameters"] = values
        arn = self.backend.call("start the pipeline", self.sm.start_pipeline_execution, **request)[
            "PipelineExecutionArn"]
        self._remember(arn)
        return PipelineExecution(self.backend, pipeline_name, arn.rsplit("/", 1)[1])

    # -- one execution -----------------------------------------------------------------------------------
    def execution_arn(self, pipeline_name, execution_id):
        """The execution's ARN: remembered from start or a listing, else found by listing the pipeline's
        executions (SageMaker may spell the pipeline's name in the ARN otherwise than the user does)."""
        with self._lock:
            known = self._arns.get((pipeline_name, execution_id))
        if known:
            return known
        for summary in self._executions_of(pipeline_name):
            if summary["PipelineExecutionArn"].endswith(f"/execution/{execution_id}"):
                return self._remember(summary["PipelineExecutionArn"])
        raise SmRMagicError(f"pipeline {pipeline_name} has no execution {execution_id} in {self.backend.session.region}"
                            f": list them with %r_jobs --backend sagemaker")

    def _fixed_answer(self, what, arn, fetch):
        key = (what, arn)
        with self._lock:
            if key in self._fixed:
                return self._fixed[key]
        answer = fetch()
        with self._lock:
            self._fixed[key] = answer
        return answer

    def describe(self, pipeline_name, execution_id):
        """DescribePipelineExecution's answer, plus PipelineName, PipelineExecutionId, Parameters ([{Name,
        Value}]) and, when a step failed, FailureReason naming it with its job's own error (the R error)."""
        arn = self.execution_arn(pipeline_name, execution_id)
        desc = dict(self._describe_arn(arn))
        desc.update(PipelineName=pipeline_name, PipelineExecutionId=execution_id,
                    Parameters=self._parameters(arn))
        if desc.get("PipelineExecutionStatus") == "Failed":
            reason = self._fixed_answer("failure", arn, lambda: self._failed_step_reason(arn))
            desc["FailureReason"] = reason or desc.get("FailureReason")
        return desc

    def _describe_arn(self, arn):
        from botocore.exceptions import ClientError

        try:
            return self.described(("pipeline", arn),
                                  lambda: self.sm.describe_pipeline_execution(PipelineExecutionArn=arn),
                                  lambda: f"no SageMaker pipeline execution {arn}: list them with %r_jobs --backend "
                                          "sagemaker")
        except ClientError as exc:
            raise self.backend.refusal("describe the pipeline execution", exc) from None

    def _parameters(self, arn):
        def fetch():
            pages = self.sm.get_paginator("list_pipeline_parameters_for_execution").paginate(
                PipelineExecutionArn=arn)
            return self.backend.asking("list the execution's parameters", lambda: [
                dict(p) for page in pages for p in page.get("PipelineParameters", [])])

        return [dict(p) for p in self._fixed_answer("parameters", arn, fetch)]

    def _failed_step_reason(self, arn):
        """'step fit (training job NAME) failed: <the job's failure reason>' for the failed step, as the local
        executor words it; None when SageMaker does not say which step failed."""
        from ..jobs import Job

        self.backend.describes.forget(("pipeline-steps", arn))  # listed after the end: the final word
        for step in self._steps_of_arn(arn):
            if step.get("StepStatus") != "Failed":
                continue
            reason = step.get("FailureReason") or ""
            job = step_job(step)
            if job:
                try:
                    reason = Job(self.backend, *job).failure_reason or reason
                except SmRMagicError:
                    pass
                return f"step {step['StepName']} ({job[0]} job {job[1]}) failed: {reason}"
            return f"step {step['StepName']} failed: {reason}"
        return None

    def steps(self, pipeline_name, execution_id):
        """ListPipelineExecutionSteps' PipelineExecutionSteps (newest first, as SageMaker lists them)."""
        return [dict(step) for step in self._steps_of_arn(self.execution_arn(pipeline_name, execution_id))]

    def _steps_of_arn(self, arn):
        with self._lock:
            final = self._fixed.get(("steps", arn))
        if final is not None:
            return final
        cache = self.backend.describes
        key = ("pipeline-steps", arn)

        def fetch():
            pages = self.sm.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn)
            return {"PipelineExecutionSteps": [s for page in pages for s in page.get("PipelineExecutionSteps", [])]}

        steps = self.backend.asking("list the pipeline execution's steps", lambda: cache.get(key, fetch))[
            "PipelineExecutionSteps"]
        self._note_step_jobs(steps)
        desc = cache.peek(("pipeline", arn)) or {}
        if (desc.get("PipelineExecutionStatus") in EXECUTION_TERMINAL
                and cache.fetched_at(key) >= cache.fetched_at(("pipeline", arn))):
            with self._lock:  # listed after the execution ended: this is the last word
                self._fixed[("steps", arn)] = steps
        return steps

    def _note_step_jobs(self, steps):
        """Step jobs are watched like jobs: their log reads slow down as they run on, and a job whose step has
        ended is described once, so its logs are read to the end and then left alone."""
        for step in steps:
            job = step_job(step)
            if not job:
                continue
            self.backend.describes.seen(job)
            if step.get("StepStatus") not in STEP_TERMINAL:
                continue
            with self._lock:
                first = job not in self._ended_jobs
                self._ended_jobs.add(job)
            if first:
                self.backend.forget(*job)
                try:
                    self.backend.describe_job(*job)
                except SmRMagicError:
                    pass

    def stop(self, pipeline_name, execution_id):
        """StopPipelineExecution; False when the execution had already ended."""
        from botocore.exceptions import ClientError

        arn = self.execution_arn(pipeline_name, execution_id)
        try:
            self.sm.stop_pipeline_execution(PipelineExecutionArn=arn)
        except ClientError as exc:
            if aws.error_code(exc) in ("ValidationException", "ConflictException") and not aws.is_not_found(exc):
                return False  # stopping or ended already
            raise self.backend.refusal("stop the pipeline execution", exc) from None
        finally:
            self.backend.describes.forget(("pipeline", arn))
            self.backend.describes.forget(("pipeline-steps", arn))
        return True

    def definition(self, pipeline_name, execution_id):
        """The definition this execution runs (DescribePipelineDefinitionForExecution), asked once."""
        arn = self.execution_arn(pipeline_name, execution_id)

        def fetch():
            answer = self.backend.call("read the execution's definition",
                                       self.sm.describe_pipeline_definition_for_execution,
                                       PipelineExecutionArn=arn)
            return answer["PipelineDefinition"]

        return json.loads(self._fixed_answer("definition", arn, fetch))

    def pipeline_definition(self, pipeline_name):
        """The pipeline's definition as it is now (DescribePipeline)."""
        answer = self.backend.call(f"describe the pipeline {pipeline_name}", self.sm.describe_pipeline,
                                   PipelineName=pipeline_name)
        return json.loads(answer["PipelineDefinition"])

    # -- many executions -----------------------------------------------------------------------------------
    def _executions_of(self, pipeline_name, limit=None):
        """ListPipelineExecutions summaries, newest first (all of them, or the newest `limit`)."""
        from botocore.exceptions import ClientError

        args = {"PipelineName": pipeline_name, "SortBy": "CreationTime", "SortOrder": "Descending"}
        pages = self.sm.get_paginator("list_pipeline_executions").paginate(
            **args, PaginationConfig={"MaxItems": limit, "PageSize": limit} if limit else {})
        try:
            found = [s for page in pages for s in page.get("PipelineExecutionSummaries", [])]
        except ClientError as exc:
            if aws.is_not_found(exc):
                raise SmRMagicError(f"no SageMaker pipeline named {pipeline_name} in "
                                    f"{self.backend.session.region}") from None
            raise self.backend.refusal("list the pipeline's executions", exc) from None
        found.sort(key=lambda s: s["StartTime"].timestamp() if s.get("StartTime") else 0, reverse=True)
        for summary in found:
            self._remember(summary["PipelineExecutionArn"])
        return found

    def _pipelines(self):
        """ListPipelines summaries, the most recently run first."""
        found = []
        for page in self.sm.get_paginator("list_pipelines").paginate(SortBy="CreationTime", SortOrder="Descending"):
            found += page.get("PipelineSummaries", [])
        found.sort(key=lambda p: (p.get("LastExecutionTime") or p.get("CreationTime")).timestamp(), reverse=True)
        return found

    def list(self, pipeline_name=None):
        """The newest executions (of one pipeline, or of the pipelines run most recently), oldest first."""
        if pipeline_name:
            summaries = [(pipeline_name, s) for s in self._executions_of(pipeline_name, LIST_LIMIT)]
        else:
            pipelines = [p for p in self.backend.call("list pipelines", self._pipelines) if p.get("LastExecutionTime")]
            summaries = [(p["PipelineName"], s) for p in pipelines[:RECENT_PIPELINES]
                         for s in self._executions_of(p["PipelineName"], LIST_LIMIT)]
            summaries.sort(key=lambda item: item[1]["StartTime"], reverse=True)
            summaries = summaries[:LIST_LIMIT]
        return [self._handle(name, s) for name, s in reversed(summaries)]

    def _handle(self, pipeline_name, summary):
        started = summary.get("StartTime")
        return PipelineExecution(self.backend, pipeline_name, summary["PipelineExecutionArn"].rsplit("/", 1)[1],
                                 created=started.timestamp() if started else None)

    def find(self, name):
        """The execution with this id (or ARN), in any pipeline; None when there is none."""
        match = EXECUTION_ARN.fullmatch(name)
        if match:
            self._remember(name)
            return PipelineExecution(self.backend, match.group(1), match.group(2))
        if not EXECUTION_ID.fullmatch(name):
            return None
        with self._lock:
            for (pipeline, execution_id) in self._arns:
                if execution_id == name:
                    return PipelineExecution(self.backend, pipeline, execution_id)
        for pipeline in self.backend.call("list pipelines", self._pipelines):
            for summary in self._executions_of(pipeline["PipelineName"]):
                if summary["PipelineExecutionArn"].endswith(f"/execution/{name}"):
                    return self._handle(pipeline["PipelineName"], summary)
        return None


def _text(value):
    """A parameter value as PipelineParameters carry it."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

