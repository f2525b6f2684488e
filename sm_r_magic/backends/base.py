"""The one small interface every backend implements: what the API calls to turn options into a request and run
it, and what handles (Job, Predictor) call to watch and control what runs. Backends never import IPython,
ipywidgets or the views: they also run without a kernel (the R package, the CLI, tests)."""

import os
import tarfile

from ..archives import UnsafeArchive, check_archive
from ..errors import SmRMagicError
from ..sourcedir import member_names
from ..uris import is_s3, local_path


class Backend:
    name = "base"
    # Status polling interval while waiting: starts at the first value and backs off to the second.
    poll_interval = (0.1, 1.0)

    def __init__(self, config):
        self.config = config

    # -- before submission: pure or read-only, so that bad input creates nothing -------------------------
    def check_ready(self):
        """Raise SmRMagicError naming any missing setting or tool."""

    def image(self):
        return self.config.image

    def role(self):
        return self.config.role or None

    def code_uri(self, sourcedir):
        """Where the request says the code (sourcedir.tar.gz) is; upload() puts it there."""
        raise NotImplementedError

    def data_uri(self, uri, option):
        """A user's input (an --input or --channel) -> uris.Staged: the URI the request names, and the local data
        upload() must put there (if any). Validated: a missing local path is an SmRMagicError naming `option`."""
        raise NotImplementedError

    def output_uri(self, uri, option):
        """A user's explicit output location (--output NAME=URI) as the request names it."""
        raise NotImplementedError

    def training_output_path(self):
        raise NotImplementedError

    def processing_output_uri(self, job_name, output_name):
        """The default location of a processing output."""
        raise NotImplementedError

    def model_data_uri(self, uri):
        """A user's model.tar.gz location -> uris.Staged, as CreateModel should name it."""
        raise NotImplementedError

    # -- submission and watching -------------------------------------------------------------------------
    def upload(self, sourcedir, staged=()):
        """Store the code and the local data of the uris.Staged values data_uri()/model_data_uri() gave."""

    def code_files(self, code_uri):
        """The file names in a stored sourcedir.tar.gz (a job's code), or None when they cannot be read."""
        if is_s3(code_uri):
            return None
        try:
            return member_names(local_path(code_uri, "code"))
        except (OSError, SmRMagicError, tarfile.TarError):
            return None

    # -- jobs, endpoints, pipelines and the model registry: each backend composes four parts, `jobs` (submit,
    # describe, read_logs, stop, list, from_arn), `endpoints` (deploy, describe, invoke, example, read_logs,
    # delete, list, model_request), `pipelines` (start, describe, steps, stop, list, definition) and `registry`
    # (register, list, describe, update_approval, latest_approved); the methods below are the interface the API
    # and the handles call, so that a backend class keeps only what its parts share (session, staging, attach).
    jobs = None
    endpoints = None

    def submit(self, kind, request):
        """Create the job (CreateTrainingJob / CreateProcessingJob) -> jobs.Job."""
        return self.jobs.submit(kind, request)

    def describe_job(self, kind, name):
        """DescribeTrainingJob / DescribeProcessingJob-shaped dict."""
        return self.jobs.describe(kind, name)

    def read_logs(self, kind, name, cursor=None):
        """New log lines since `cursor` -> (lines, cursor)."""
        return self.jobs.read_logs(kind, name, cursor)

    def stop_job(self, kind, name):
        """Stop a running job (its R gets SIGTERM); False when it had already ended."""
        return self.jobs.stop(kind, name)

    def list_jobs(self):
        """The recent jobs, oldest first (jobs.Job handles)."""
        return self.jobs.list() if self.jobs is not None else []

    def job_from_arn(self, arn):
        """The jobs.Job a pipeline step ran, from its ARN ("arn:aws:sagemaker:...:training-job/NAME", or the
        local backends' "local:training-job/NAME")."""
        return self.jobs.from_arn(arn)

    def attach(self, name):
        """A Job or Predictor by name (exact, or the latest starting with `name-`), or a pipeline execution
        (workflow.execution.PipelineExecution) by its execution id."""
        raise NotImplementedError

    # endpoints: the requests of spec.model_request / endpoint_config_request / endpoint_request
    def deploy(self, requests, keep=False):
        """Create model, endpoint config and endpoint from {"model": ..., "endpoint_config": ...,
        "endpoint": ...}; returns a predictor.Predictor at once (status Creating)."""
        return self.endpoints.deploy(requests, keep=keep)

    def describe_endpoint(self, name):
        """DescribeEndpoint-shaped dict: EndpointStatus (Creating, InService, Failed, Deleting, ...),
        FailureReason, CreationTime; local backends add LocalUrl."""
        return self.endpoints.describe(name)

    def invoke_endpoint(self, name, body, content_type, accept):
        """POST /invocations (InvokeEndpoint) -> (response bytes, response content type).
        Raises predictor.InvocationError with the status code and the body on errors."""
        return self.endpoints.invoke(name, body, content_type, accept)

    def endpoint_example(self, name, content_type):
        """A request body the endpoint's model takes (a row of its own inputs), or None when the backend cannot
        ask (SageMaker routes only /ping and /invocations to a container)."""
        return self.endpoints.example(name, content_type)

    def read_endpoint_logs(self, name, cursor=None):
        return self.endpoints.read_logs(name, cursor)

    def delete_endpoint(self, name):
        """Delete the endpoint, its endpoint config and its model."""
        return self.endpoints.delete(name)

    def list_endpoints(self):
        """The live endpoints, oldest first (predictor.Predictor handles)."""
        return self.endpoints.list() if self.endpoints is not None else []

    def endpoint_model_request(self, name):
        """The CreateModel request of an endpoint (its PrimaryContainer: image, model data, the environment that
        names its inference code), for registering a model served with the same code."""
        return self.endpoints.model_request(name)

    # pipelines and the model registry
    pipelines = None
    registry = None

    def start_pipeline(self, pipeline_name, definition, parameters=None):
        """Start an execution of `definition` (local and docker: folder_executions.start; sagemaker: create or
        update the pipeline, then StartPipelineExecution) -> workflow.execution.PipelineExecution. Bad input
        (a name, an unknown parameter) is an SmRMagicError and starts nothing."""
        return self.pipelines.start(pipeline_name, definition, parameters)

    def describe_pipeline_execution(self, pipeline_name, execution_id):
        """DescribePipelineExecution-shaped: PipelineArn, PipelineExecutionArn, PipelineExecutionDisplayName,
        PipelineExecutionStatus (Executing, Stopping, Stopped, Failed, Succeeded), FailureReason, CreationTime,
        LastModifiedTime (local and docker add EndTime, Parameters, Steps and LocalExecutionFolder)."""
        return self.pipelines.describe(pipeline_name, execution_id)

    def list_pipeline_execution_steps(self, pipeline_name, execution_id):
        """ListPipelineExecutionSteps' PipelineExecutionSteps: the steps that started (StepName, StepStatus,
        StartTime, EndTime, FailureReason, CacheHitResult, Metadata {TrainingJob|ProcessingJob {Arn},
        Condition {Outcome}, RegisterModel {Arn}, Fail {ErrorMessage}})."""
        return self.pipelines.steps(pipeline_name, execution_id)

    def stop_pipeline_execution(self, pipeline_name, execution_id):
        """Stop the execution: its running step jobs are stopped, nothing more starts."""
        return self.pipelines.stop(pipeline_name, execution_id)

    def list_pipeline_executions(self, pipeline_name=None):
        """PipelineExecution handles of one pipeline (or of every pipeline), oldest first."""
        return self.pipelines.list(pipeline_name) if self.pipelines is not None else []

    def pipeline_execution_definition(self, pipeline_name, execution_id):
        """The definition dict that execution runs."""
        return self.pipelines.definition(pipeline_name, execution_id)

    def register_model_package(self, request):
        """Add a version from a CreateModelPackage request (the group is created when missing); returns its
        DescribeModelPackage-shaped answer."""
        return self.registry.register(request)

    def list_model_packages(self, group):
        """The group's versions, newest first, each DescribeModelPackage-shaped (ModelPackageGroupName,
        ModelPackageVersion, ModelPackageArn, ModelApprovalStatus, CreationTime, InferenceSpecification,
        ModelMetrics, MetadataProperties {GeneratedBy}, CustomerMetadataProperties). A group that does not
        exist is an SmRMagicError."""
        return self.registry.list(group)

    def describe_model_package(self, group, version):
        """One version, DescribeModelPackage-shaped; a missing group or version is an SmRMagicError."""
        return self.registry.describe(group, version)

    def update_model_package_approval(self, group, version, status, description=None):
        """Set the approval (Approved, Rejected, PendingManualApproval); returns the version's new answer."""
        return self.registry.update_approval(group, version, status, description)

    def latest_approved_model_package(self, group):
        """The newest Approved version of a group (DescribeModelPackage-shaped); an empty group, or one without an
        Approved version, is one line saying what to do."""
        return self.registry.latest_approved(group)


def local_model_tarball(uri):
    """--model given as a local path: an existing, readable gzip tar whose members are safe to extract
    (archives.check_archive), checked before any endpoint or upload exists."""
    path = local_path(uri, "--model")
    if os.path.isdir(path) or not path.endswith(".tar.gz"):
        raise SmRMagicError(f"--model {uri} is not a model.tar.gz: give a training job, its name, "
                            "a model.tar.gz path or an s3:// URI")
    try:
        check_archive(path)
    except UnsafeArchive as exc:
        raise SmRMagicError(f"--model {uri} {exc}: rebuild it from plain files and folders (links may only "
                            "point inside it)") from None
    return path
