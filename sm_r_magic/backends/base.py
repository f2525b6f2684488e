"""The small interface every backend implements; Job handles call it."""

import os
import tarfile

from ..errors import SmRMagicError
from ..sourcedir import member_names


class Backend:
    name = "base"
    # Status polling interval while waiting: starts at the first value and backs off to the second.
    poll_interval = (0.1, 1.0)

    def __init__(self, config):
        self.config = config

    # -- before submission: pure or read-only, so that bad input creates nothing ---------------------
    def check_ready(self):
        """Raise SmRMagicError naming any missing setting."""

    def image(self):
        return self.config.image

    def role(self):
        return self.config.role or None

    def code_uri(self, sourcedir):
        raise NotImplementedError

    def data_uri(self, uri, option):
        """The URI the request names for a user input (validated; may point where an upload will go)."""
        raise NotImplementedError

    def training_output_path(self):
        raise NotImplementedError

    def processing_output_uri(self, job_name, output_name):
        raise NotImplementedError

    # -- submission and watching ----------------------------------------------------------------------
    def upload(self, sourcedir, data_uris):
        """Store the code and any local data the request points at."""

    def code_files(self, code_uri):
        """The file names in a stored sourcedir.tar.gz (a job's code), or None when they cannot be read."""
        if "://" in code_uri and not code_uri.startswith("file://"):
            return None
        try:
            return member_names(local_path(code_uri, "code"))
        except (OSError, SmRMagicError, tarfile.TarError):
            return None

    def submit(self, kind, request):
        raise NotImplementedError

    def describe_job(self, kind, name):
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

    # -- endpoints: the three requests of spec.model_request / endpoint_config_request / endpoint_request --
    def model_data_uri(self, uri):
        """A user's model.tar.gz location as the CreateModel request should name it."""
        raise NotImplementedError

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


def local_path(uri, option, must_exist=True):
    """A plain path or file:// URI as an absolute path; a missing path is the user's to fix."""
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    path = os.path.abspath(os.path.expanduser(path))
    if must_exist and not os.path.exists(path):
        raise SmRMagicError(f"{option}: {uri} does not exist: give an existing file or folder, or an s3:// URI")
    return path


def local_model_tarball(uri):
    """--model given as a local path: it must be an existing model.tar.gz file."""
    path = local_path(uri, "--model")
    if os.path.isdir(path) or not path.endswith(".tar.gz"):
        raise SmRMagicError(f"--model {uri} is not a model.tar.gz: give a training job, its name, "
                            "a model.tar.gz path or an s3:// URI")
    return path
