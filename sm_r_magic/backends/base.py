"""The small interface every backend implements; Job handles call it."""

import os

from ..errors import SmRMagicError


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
        raise NotImplementedError


def local_path(uri, option, must_exist=True):
    """A plain path or file:// URI as an absolute path; a missing path is the user's to fix."""
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    path = os.path.abspath(os.path.expanduser(path))
    if must_exist and not os.path.exists(path):
        raise SmRMagicError(f"{option}: {uri} does not exist: give an existing file or folder, or an s3:// URI")
    return path
