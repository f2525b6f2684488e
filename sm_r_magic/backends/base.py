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

    def submit(self, kind, request):
        """Create the job (CreateTrainingJob / CreateProcessingJob) -> jobs.Job."""
        raise NotImplementedError

    def describe_job(self, kind, name):
        """DescribeTrainingJob / DescribeProcessingJob-shaped dict."""
        raise NotImplementedError

    def read_logs(self, kind, name, cursor=None):
        """New log lines since `cursor` -> (lines, cursor)."""
        raise NotImplementedError

    def stop_job(self, kind, name):
        raise NotImplementedError

    def list_jobs(self):
        return []

    def attach(self, name):
        """A Job or Predictor by name (exact, or the latest starting with `name-`)."""
        raise NotImplementedError

    # -- endpoints: the requests of spec.model_request / endpoint_config_request / endpoint_request ---------
    def deploy(self, requests, keep=False):
        """Create model, endpoint config and endpoint from {"model": ..., "endpoint_config": ...,
        "endpoint": ...}; returns a predictor.Predictor at once (status Creating)."""
        raise NotImplementedError

    def describe_endpoint(self, name):
        """DescribeEndpoint-shaped dict: EndpointStatus (Creating, InService, Failed, Deleting, ...),
        FailureReason, CreationTime; local backends add LocalUrl."""
        raise NotImplementedError

    def invoke_endpoint(self, name, body, content_type, accept):
        """POST /invocations (InvokeEndpoint) -> (response bytes, response content type).
        Raises predictor.InvocationError with the status code and the body on errors."""
        raise NotImplementedError

    def read_endpoint_logs(self, name, cursor=None):
        return [], cursor

    def delete_endpoint(self, name):
        """Delete the endpoint, its endpoint config and its model."""
        raise NotImplementedError

    def list_endpoints(self):
        return []


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
