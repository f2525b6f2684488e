"""The sagemaker backend: the same request dicts the local backend executes, sent to the real service with
boto3 (Create*/Describe*/Stop*, sagemaker-runtime InvokeEndpoint). Code and local data go to S3
(s3_staging.py), logs come from CloudWatch (cloudwatch.py).

Pipelines (sagemaker_pipelines.py) and the model registry (sagemaker_registry.py) are composed in the same way.

Watching is cheap whoever asks (the foreground wait loop, a widget's poller thread, %r_jobs, several handles of
one job): a description is reused for `describe_ttl` seconds, and that time grows with how long the job has
been watched (a tenth of it, up to the 30 s poll ceiling); CloudWatch Logs is read at most as often (but at once
when the job has ended). The wait loop's own interval backs off from 5 s to 30 s. A job watched for a long time
costs about two DescribeTrainingJob and two GetLogEvents calls a minute; adaptive retries add client-side rate
limiting if SageMaker throttles anyway (see benchmarks/bench_submit.py). A job's logs are read no more once they
were read to the end well after the job ended (LOGS_SETTLED): an ended pipeline step costs nothing to watch.
"""

import datetime
import os
import threading
import time

import boto3  # noqa: F401  (imported here so that a missing boto3 is reported by get_backend)

from .. import aws
from ..contract import NAME_KEY
from ..errors import SmRMagicError
from ..uris import is_s3
from .base import Backend
from .cloudwatch import LogTail
from .s3_staging import S3Staging
from .sagemaker_pipelines import EXECUTION_ID, SageMakerPipelines, job_of_arn
from .sagemaker_registry import SageMakerRegistry

LIST_LIMIT = 20
# Codes of AWS errors a user can act on (a bad request, a missing or busy resource, a limit, a permission):
# one line instead of a traceback.
ACTIONABLE = ("ValidationException", "ResourceLimitExceeded", "ResourceInUse", "ResourceNotFound",
              "ConflictException", "AccessDeniedException", "AccessDenied")
LOGS_SETTLED = 60.0  # seconds after a job's end when CloudWatch has long shown all of its lines


def _strip(response):
    """An AWS answer without its ResponseMetadata."""
    response = dict(response)
    response.pop("ResponseMetadata", None)
    return response


class DescribeCache:
    """Descriptions reused for a while, longer the longer a job has been watched."""

    def __init__(self, backend):
        self.backend = backend
        self._lock = threading.Lock()
        self.entries = {}     # key -> (monotonic time, description)
        self.first_seen = {}  # key -> monotonic time of the first describe (or sighting) in this process

    def forget(self, key=None):
        with self._lock:
            if key is None:
                self.entries.clear()
            else:
                self.entries.pop(key, None)

    def peek(self, key):
        with self._lock:
            hit = self.entries.get(key)
        return hit[1] if hit else None

    def fetched_at(self, key):
        """When the kept description of `key` was fetched (monotonic), or -inf."""
        with self._lock:
            hit = self.entries.get(key)
        return hit[0] if hit else float("-inf")

    def seen(self, key):
        """Note that `key` is being watched (a pipeline lists its step's job): its reuse time starts growing."""
        with self._lock:
            self.first_seen.setdefault(key, time.monotonic())

    def ttl(self, key, base):
        """How long a description (or a log read) of `key` stays fresh: `base` at first, then a tenth of the time
        the job has been watched, never more than the slowest poll interval."""
        if base <= 0:
            return 0.0
        first = self.first_seen.get(key)
        age = time.monotonic() - first if first else 0.0
        return min(max(base, self.backend.poll_interval[1]), max(base, age * self.backend.ttl_growth))

    def get(self, key, fetch):
        now = time.monotonic()
        with self._lock:
            hit = self.entries.get(key)
            self.first_seen.setdefault(key, now)
        if hit and now - hit[0] < self.ttl(key, self.backend.describe_ttl):
            return hit[1]
        desc = _strip(fetch())
        with self._lock:
            self.entries[key] = (time.monotonic(), desc)
        return desc


class SageMakerBackend(Backend):
    name = "sagemaker"
    poll_interval = (5.0, 30.0)  # seconds between status polls while waiting: backs off from 5 to 30
    describe_ttl = 5.0           # a description is reused at least this long (0: no cache), see DescribeCache
    log_interval = 5.0           # CloudWatch Logs is read at least this far apart while a job runs (0: always)
    stream_rescan = 60.0         # list a job's log streams again at most this often, until all instances have one
    final_log_lag = 5.0          # CloudWatch shows a job's last lines a few seconds after it ended: wait that long
    ttl_growth = 0.1             # the reuse time grows to this fraction of the time the job has been watched

    def __init__(self, config):
        super().__init__(config)
        self._session = None
        self._session_key = None
        self._lock = threading.Lock()
        self.staging = S3Staging(self)
        self.log_tail = LogTail(self)
        self.describes = DescribeCache(self)
        self.pipelines = SageMakerPipelines(self)
        self.registry = SageMakerRegistry(self)
        self.api_calls = 0  # every AWS request made through this backend (benchmarks, tests)

    # -- session ---------------------------------------------------------------------------------------
    @property
    def session(self):
        """The boto3 session, rebuilt when the region, profile or endpoint changes."""
        key = (self.config.region, os.environ.get("AWS_PROFILE"), os.environ.get("AWS_ENDPOINT_URL"),
               os.environ.get("AWS_DEFAULT_REGION"))
        with self._lock:
            if self._session is None or key != self._session_key:
                self._session = aws.AwsSession(region=self.config.region or None)
                self._session_key = key
                self.staging.session_changed()
                self._session.boto.events.register("before-call", self._count)
            return self._session

    def _count(self, **kwargs):
        self.api_calls += 1

    def client(self, service):
        return self.session.client(service)

    @property
    def sm(self):
        return self.client("sagemaker")

    @staticmethod
    def strip(response):
        return _strip(response)

    @staticmethod
    def refusal(what, exc):
        """What to raise for a failed AWS call: a one-line SmRMagicError when the user can act on it, else the
        error itself."""
        code = aws.error_code(exc)
        if code in ACTIONABLE:
            return SmRMagicError(f"SageMaker refused to {what}: {code}: {aws.error_message(exc)}")
        return exc

    def asking(self, what, func):
        """func() (AWS calls, e.g. a paginator's pages); a failure the user can act on is one line."""
        from botocore.exceptions import ClientError, NoCredentialsError

        try:
            return func()
        except NoCredentialsError:
            raise SmRMagicError(aws.CREDENTIALS_HINT) from None
        except ClientError as exc:
            raise self.refusal(what, exc) from None

    def call(self, what, func, **kwargs):
        """An AWS call whose failure the user can act on becomes a one-line SmRMagicError."""
        return self.asking(what, lambda: func(**kwargs))

    # -- before submission -------------------------------------------------------------------------------
    def check_ready(self):
        """Region, credentials, image, role and bucket name, in that order; nothing is created or uploaded."""
        session = self.session  # region
        session.identity()  # credentials: one line now, not a botocore traceback at the first S3 call
        aws.check_image(self.config.image)
        session.role_arn(self.config.role)
        self.staging.bucket()

    def image(self):
        return aws.check_image(self.config.image)

    def role(self):
        return self.session.role_arn(self.config.role)

    def code_uri(self, sourcedir):
        return self.staging.code_uri(sourcedir)

    def code_file_uri(self, path):
        """A stored sourcedir.tar.gz (a local cell's code) -> uris.Staged at the S3 location code_uri() gives it."""
        return self.staging.code_file(path)

    def data_uri(self, uri, option):
        return self.staging.data_uri(uri, option)

    def output_uri(self, uri, option):
        if is_s3(uri):
            return uri
        raise SmRMagicError(f"{option}: sagemaker jobs write their outputs to S3: give an s3:// URI, or no URI "
                            "for the default location")

    def training_output_path(self):
        return self.staging.uri("output")

    def processing_output_uri(self, job_name, output_name):
        return self.staging.uri("output", job_name, output_name)

    def model_data_uri(self, uri):
        return self.staging.model_data_uri(uri)

    def upload(self, sourcedir, staged=()):
        return self.staging.upload(sourcedir, staged)

    def code_files(self, code_uri):
        """The file names in a job's sourcedir.tar.gz in S3 (one GetObject), or None when unreadable."""
        if not is_s3(code_uri):
            return super().code_files(code_uri)
        return self.staging.code_files(code_uri)

    # -- jobs --------------------------------------------------------------------------------------------
    def submit(self, kind, request):
        from ..jobs import Job

        if kind not in NAME_KEY:
            raise ValueError(f"unknown job kind {kind!r}")
        create = self.sm.create_training_job if kind == "training" else self.sm.create_processing_job
        self.call(f"create the {kind} job", create, **request)
        return Job(self, kind, request[NAME_KEY[kind]])

    def forget(self, kind=None, name=None):
        """Drop cached descriptions (all, or one job's) so the next describe asks SageMaker."""
        self.describes.forget(None if name is None else (kind, name))

    def describe_job(self, kind, name):
        from botocore.exceptions import ClientError

        func = self.sm.describe_training_job if kind == "training" else self.sm.describe_processing_job
        try:
            return self.describes.get((kind, name), lambda: func(**{NAME_KEY[kind]: name}))
        except ClientError as exc:
            if aws.is_not_found(exc):
                raise SmRMagicError(f"no SageMaker {kind} job named {name} in {self.session.region}") from None
            raise

    def stop_job(self, kind, name):
        from botocore.exceptions import ClientError

        func = self.sm.stop_training_job if kind == "training" else self.sm.stop_processing_job
        try:
            func(**{NAME_KEY[kind]: name})
        except ClientError as exc:
            if aws.error_code(exc) == "ValidationException":  # already finished / stopping
                return False
            raise
        finally:
            self.forget(kind, name)
        return True

    def read_logs(self, kind, name, cursor=None):
        """New log lines of a job; none, without asking CloudWatch, once they were read to the end well after
        the job ended."""
        if (cursor or {}).get("settled"):
            return [], cursor
        lines, cursor = self.log_tail.job_lines(kind, name, cursor)
        if cursor and cursor.get("drained") and self._ended_long_ago(kind, name):
            cursor = dict(cursor, settled=True)
        return lines, cursor

    def _ended_long_ago(self, kind, name):
        desc = self.describes.peek((kind, name)) or {}
        ended = desc.get("TrainingEndTime") or desc.get("ProcessingEndTime")
        if not isinstance(ended, datetime.datetime) or ended.tzinfo is None:
            return False
        return (datetime.datetime.now(datetime.timezone.utc) - ended).total_seconds() > LOGS_SETTLED

    def job_from_arn(self, arn):
        """The Job of a pipeline step: "arn:aws:sagemaker:REGION:ACCOUNT:training-job/NAME" (or processing-job)."""
        from ..jobs import Job

        found = job_of_arn(arn)
        if not found:
            raise SmRMagicError(f"{arn!r} is not the ARN of a SageMaker training or processing job")
        return Job(self, *found)

    def read_endpoint_logs(self, name, cursor=None):
        return self.log_tail.endpoint_lines(name, cursor)

    # -- listing and attaching -----------------------------------------------------------------------------
    def _recent(self, kind, name_contains=None, limit=LIST_LIMIT):
        args = {"SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": limit}
        if name_contains:
            args["NameContains"] = name_contains
        if kind == "training":
            return [(s["CreationTime"], s["TrainingJobName"]) for s in self.call(
                "list training jobs", self.sm.list_training_jobs, **args).get("TrainingJobSummaries", [])]
        return [(s["CreationTime"], s["ProcessingJobName"]) for s in self.call(
            "list processing jobs", self.sm.list_processing_jobs, **args).get("ProcessingJobSummaries", [])]

    def list_jobs(self):
        """The account's most recent training and processing jobs (two List calls; oldest first)."""
        from ..jobs import Job

        found = [(created, Job(self, kind, name, created=created.timestamp())) for kind in ("training", "processing")
                 for created, name in self._recent(kind)]
        found.sort(key=lambda item: item[0])
        return [job for _, job in found]

    def attach(self, name):
        """A job or endpoint by exact name, a pipeline execution by id (or ARN), else the latest job/endpoint
        whose name starts with `name-`."""
        from botocore.exceptions import ClientError

        from ..jobs import Job

        if name.startswith("arn:"):
            execution = self.pipelines.find(name)
            if execution is None and job_of_arn(name) is None:
                raise SmRMagicError(f"{name} is not the ARN of a pipeline execution or a job: give an execution "
                                    "id, a job or an endpoint name")
            return execution or self.job_from_arn(name)
        for kind in ("training", "processing"):
            try:
                self.describe_job(kind, name)
                return Job(self, kind, name)
            except SmRMagicError:
                pass
        try:
            self.describe_endpoint(name)
            return self._predictor(name)
        except SmRMagicError:
            pass
        execution = self.pipelines.find(name)
        if execution is not None:
            return execution
        candidates = [(created, "job", kind, found) for kind in ("training", "processing")
                      for created, found in self._recent(kind, name_contains=name, limit=50)
                      if found.startswith(name + "-")]
        try:
            endpoints = self.sm.list_endpoints(SortBy="CreationTime", SortOrder="Descending", NameContains=name,
                                               MaxResults=50).get("Endpoints", [])
        except ClientError:
            endpoints = []
        candidates += [(e["CreationTime"], "endpoint", None, e["EndpointName"]) for e in endpoints
                       if e["EndpointName"].startswith(name + "-")]
        if not candidates:
            what = "job, endpoint or pipeline execution" if EXECUTION_ID.fullmatch(name) else "job or endpoint"
            raise SmRMagicError(f"no SageMaker {what} named {name} (or {name}-...) in {self.session.region}: list "
                                "them with %r_jobs --backend sagemaker")
        _, what, kind, found = max(candidates, key=lambda item: item[0])
        return Job(self, kind, found) if what == "job" else self._predictor(found)

    # -- endpoints -------------------------------------------------------------------------------------------
    def _predictor(self, name):
        from ..predictor import Predictor

        return Predictor(self, name)

    def deploy(self, requests, keep=False):
        """CreateModel, CreateEndpointConfig, CreateEndpoint; returns a Predictor at once (Creating).

        A local model.tar.gz named by model_data_uri() must have been uploaded (upload()). If a later step
        fails, what was created is deleted again. `keep` has no effect: SageMaker endpoints live until deleted."""
        model, config, endpoint = requests["model"], requests["endpoint_config"], requests["endpoint"]
        created = []
        try:
            self.call("create the model", self.sm.create_model, **model)
            created.append(("model", model["ModelName"]))
            self.call("create the endpoint config", self.sm.create_endpoint_config, **config)
            created.append(("config", config["EndpointConfigName"]))
            self.call("create the endpoint", self.sm.create_endpoint, **endpoint)
        except Exception:
            for what, name in reversed(created):
                try:
                    if what == "config":
                        self.sm.delete_endpoint_config(EndpointConfigName=name)
                    else:
                        self.sm.delete_model(ModelName=name)
                except Exception:
                    pass
            raise
        return self._predictor(endpoint["EndpointName"])

    def describe_endpoint(self, name):
        from botocore.exceptions import ClientError

        try:
            return self.describes.get(("endpoint", name), lambda: self.sm.describe_endpoint(EndpointName=name))
        except ClientError as exc:
            if aws.is_not_found(exc):
                raise SmRMagicError(f"no SageMaker endpoint named {name} in {self.session.region}") from None
            raise

    def invoke_endpoint(self, name, body, content_type, accept):
        from botocore.exceptions import ClientError

        from ..predictor import InvocationError

        if isinstance(body, str):
            body = body.encode("utf-8")
        args = {"EndpointName": name, "Body": body, "ContentType": content_type}
        if accept:
            args["Accept"] = accept
        try:
            response = self.client("sagemaker-runtime").invoke_endpoint(**args)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            if aws.error_code(exc) == "ModelError":  # the container answered an error: its status and body
                status = exc.response.get("OriginalStatusCode") or err.get("OriginalStatusCode") or 500
                message = exc.response.get("OriginalMessage") or err.get("OriginalMessage") or err.get("Message", "")
                raise InvocationError(int(status), message) from None
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500
            raise InvocationError(int(status), f"{aws.error_code(exc)}: {err.get('Message', str(exc))}") from None
        return response["Body"].read(), response.get("ContentType")

    def delete_endpoint(self, name):
        """Delete the endpoint, then its endpoint config and model(s); parts already gone are skipped."""
        from botocore.exceptions import ClientError

        config_name, models = None, []
        try:
            config_name = self.sm.describe_endpoint(EndpointName=name)["EndpointConfigName"]
        except ClientError as exc:
            if not aws.is_not_found(exc):
                raise
        if config_name:
            try:
                config = self.sm.describe_endpoint_config(EndpointConfigName=config_name)
                models = [v["ModelName"] for v in config.get("ProductionVariants", []) if v.get("ModelName")]
            except ClientError as exc:
                if not aws.is_not_found(exc):
                    raise
        steps = [(self.sm.delete_endpoint, {"EndpointName": name})]
        if config_name:
            steps.append((self.sm.delete_endpoint_config, {"EndpointConfigName": config_name}))
        steps += [(self.sm.delete_model, {"ModelName": model}) for model in models]
        for func, args in steps:
            try:
                func(**args)
            except ClientError as exc:
                if not aws.is_not_found(exc):
                    raise
        self.forget("endpoint", name)
        return True

    def endpoint_model_request(self, name):
        """The CreateModel request of an endpoint's model, from DescribeEndpoint, DescribeEndpointConfig and
        DescribeModel (its PrimaryContainer names the inference code the endpoint serves)."""
        config_name = self.describe_endpoint(name)["EndpointConfigName"]
        config = self.call(f"describe the endpoint config of {name}", self.sm.describe_endpoint_config,
                           EndpointConfigName=config_name)
        model_name = config["ProductionVariants"][0]["ModelName"]
        model = self.call(f"describe the model of {name}", self.sm.describe_model, ModelName=model_name)
        request = {"ModelName": model_name,
                   "PrimaryContainer": model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]}
        if model.get("ExecutionRoleArn"):
            request["ExecutionRoleArn"] = model["ExecutionRoleArn"]
        return request

    def list_endpoints(self):
        response = self.call("list endpoints", self.sm.list_endpoints, SortBy="CreationTime", SortOrder="Descending",
                             MaxResults=LIST_LIMIT)
        return [self._predictor(e["EndpointName"]) for e in reversed(response.get("Endpoints", []))]

    # -- pipelines (sagemaker_pipelines.py) ----------------------------------------------------------------
    def pipeline_definition(self, pipeline_name):
        """The pipeline's definition as SageMaker has it now (DescribePipeline)."""
        return self.pipelines.pipeline_definition(pipeline_name)

    def default_checkpoint_uri(self, step_name):
        """Where a pipeline step whose cell kept its checkpoints locally keeps them on SageMaker."""
        return self.staging.uri("checkpoints", step_name)
