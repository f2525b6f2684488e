"""The sagemaker backend: the same request dicts the local backend executes, sent to the real service with
boto3 (Create*/Describe*/Stop*, sagemaker-runtime InvokeEndpoint). Code and local data go to S3
(s3_staging.py), logs come from CloudWatch (cloudwatch.py).

Jobs (sagemaker_jobs.py), endpoints (sagemaker_endpoints.py), pipelines (sagemaker_pipelines.py) and the model
registry (sagemaker_registry.py) are its parts; this file holds the session, the staging and what they share.

Watching is cheap whoever asks (the foreground wait loop, a widget's poller thread, %r_jobs, several handles of
one job): a description is reused for `describe_ttl` seconds, and that time grows with how long the job has
been watched (a tenth of it, up to the 30 s poll ceiling); CloudWatch Logs is read at most as often (but at once
when the job has ended). The wait loop's own interval backs off from 5 s to 30 s. A job watched for a long time
costs about two DescribeTrainingJob and two GetLogEvents calls a minute; adaptive retries add client-side rate
limiting if SageMaker throttles anyway (see benchmarks/bench_submit.py). A job's logs are read no more once they
were read to the end well after the job ended (LOGS_SETTLED): an ended pipeline step costs nothing to watch.
"""

import os
import threading
import time

import boto3  # noqa: F401  (imported here so that a missing boto3 is reported by get_backend)

from .. import aws
from ..errors import SmRMagicError
from ..uris import is_s3
from .base import Backend
from .cloudwatch import LogTail
from .s3_staging import S3Staging
from .sagemaker_endpoints import SageMakerEndpoints
from .sagemaker_jobs import SageMakerJobs, job_of_arn
from .sagemaker_pipelines import EXECUTION_ID, SageMakerPipelines
from .sagemaker_registry import SageMakerRegistry

# Codes of AWS errors a user can act on (a bad request, a missing or busy resource, a limit, a permission):
# one line instead of a traceback.
ACTIONABLE = ("ValidationException", "ResourceLimitExceeded", "ResourceInUse", "ResourceNotFound",
              "ConflictException", "AccessDeniedException", "AccessDenied")


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
        self.jobs = SageMakerJobs(self)
        self.endpoints = SageMakerEndpoints(self)
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

    def forget(self, kind=None, name=None):
        """Drop cached descriptions (all, or one job's or endpoint's) so the next describe asks SageMaker."""
        self.describes.forget(None if name is None else (kind, name))

    def attach(self, name):
        """A job or endpoint by exact name, a pipeline execution by id (or ARN), else the latest job/endpoint
        whose name starts with `name-`."""
        if name.startswith("arn:"):
            execution = self.pipelines.find(name)
            if execution is None and job_of_arn(name) is None:
                raise SmRMagicError(f"{name} is not the ARN of a pipeline execution or a job: give an execution "
                                    "id, a job or an endpoint name")
            return execution or self.job_from_arn(name)
        job = self.jobs.find(name)
        if job is not None:
            return job
        try:
            self.endpoints.describe(name)
            return self.endpoints.predictor(name)
        except SmRMagicError:
            pass
        execution = self.pipelines.find(name)
        if execution is not None:
            return execution
        candidates = self.jobs.latest_of_base(name) + self.endpoints.latest_of_base(name)
        if not candidates:
            what = "job, endpoint or pipeline execution" if EXECUTION_ID.fullmatch(name) else "job or endpoint"
            raise SmRMagicError(f"no SageMaker {what} named {name} (or {name}-...) in {self.session.region}: list "
                                "them with %r_jobs --backend sagemaker")
        return max(candidates, key=lambda item: item[0])[1]

    # -- pipelines (sagemaker_pipelines.py) ----------------------------------------------------------------
    def pipeline_definition(self, pipeline_name):
        """The pipeline's definition as SageMaker has it now (DescribePipeline)."""
        return self.pipelines.pipeline_definition(pipeline_name)

    def default_checkpoint_uri(self, step_name):
        """Where a pipeline step whose cell kept its checkpoints locally keeps them on SageMaker."""
        return self.staging.uri("checkpoints", step_name)
