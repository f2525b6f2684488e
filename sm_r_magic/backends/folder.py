"""What the local and docker backends share: requests executed in job folders under the local root, data named
by local paths (or s3:// URIs fetched at run time), code stored content-addressed, endpoints on 127.0.0.1. A
backend is this plus a launcher: the object that knows how to run the container's entrypoint (a process with
this machine's Rscript, or `docker run`), for jobs and for endpoint servers.

    <local_root>/sourcedir/<sha256>/sourcedir.tar.gz     the cells' code (0600)
    <local_root>/<jobs dir>/<job>/                        see jobfolder.py
    <local_root>/<endpoints dir>/<endpoint>/              see folder_endpoints.py
    <local_root>/pipelines/, <local_root>/model-registry/  see folder_pipelines.py (shared by local and docker)
    <local_root>/output/                                  training output path; output/<job>/<name> processing outputs
"""

import os
import shutil

from .. import spec
from ..errors import SmRMagicError
from ..uris import Staged, is_s3, local_path
from .base import Backend, local_model_tarball
from .folder_endpoints import FolderEndpoints
from .folder_jobs import FolderJobs
from .folder_pipelines import FolderPipelines
from .local_registry import LocalModelRegistry


KERNEL_FILESYSTEMS = ("/proc", "/sys")


def _with_credentials(uri, option):
    """An s3:// input or output of a local job: the job's runner reads it with this machine's AWS credentials,
    so without any it would fail only once the job runs."""
    from ..aws import require_credentials

    require_credentials(f"{option} {uri}")
    return uri


class FolderBackend(Backend):
    jobs_subdir = "jobs"
    endpoints_subdir = "endpoints"

    launcher_class = None  # the launcher of each folder backend: how the container's entrypoint is run

    def __init__(self, config):
        super().__init__(config)
        self.launcher = self.launcher_class(self)
        self.jobs = FolderJobs(self, self.jobs_subdir, self.launcher)
        self.endpoints = FolderEndpoints(self, self.endpoints_subdir, self.launcher)
        self.pipelines = FolderPipelines(self)

    @property
    def registry(self):
        """The local model registry under the local root (a setting: it may change)."""
        return LocalModelRegistry(self.root)

    @property
    def root(self):
        return os.path.abspath(os.path.expanduser(self.config.local_root))

    # -- before submission -------------------------------------------------------------------------------
    def check_ready(self):
        self.launcher.check_ready()
        self.check_root()

    def check_root(self):
        """The artifact root must be a folder we can write, or one we can create (nothing is created here).
        /proc and /sys are the kernel's, whatever os.access says to root."""
        path = self.root
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        real = os.path.realpath(path)
        kernel = any(real == top or real.startswith(top + "/") for top in KERNEL_FILESYSTEMS)
        if kernel or not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
            raise SmRMagicError(f"cannot keep local jobs under {self.root} ({path} is not a writable folder): "
                                '%config RMagic.local_root = "~/sm-r-magic" (or set SM_R_MAGIC_LOCAL_ROOT)')

    def warmpool_cache_dir(self):
        """What SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY is for this backend's jobs with a keep-alive period: a
        folder that outlives each job, as a warm pool's instance does."""
        path = os.path.join(self.root, f"{self.name}-warmpool-cache")
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def code_uri(self, sourcedir):
        return os.path.join(self.root, "sourcedir", sourcedir.sha256, spec.SOURCEDIR_NAME)

    def data_uri(self, uri, option):
        return Staged(_with_credentials(uri, option) if is_s3(uri) else local_path(uri, option))

    def output_uri(self, uri, option):
        return _with_credentials(uri, option) if is_s3(uri) else local_path(uri, option, must_exist=False)

    def training_output_path(self):
        return os.path.join(self.root, "output")

    def processing_output_uri(self, job_name, output_name):
        return os.path.join(self.root, "output", job_name, output_name)

    def model_data_uri(self, uri):
        return Staged(uri if is_s3(uri) else local_model_tarball(uri))

    def upload(self, sourcedir, staged=()):
        """Store the code once per content, private to this user (it may hold data and code); local data stays
        where it is."""
        if sourcedir is None:
            return None
        path = self.code_uri(sourcedir)
        if os.path.exists(path):
            try:
                os.chmod(path, 0o600)  # stored by an older version, world-readable
            except OSError:
                pass  # another user's: theirs to protect
            return path
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.partial"
        try:
            os.link(sourcedir.path, tmp)  # the built file is already 0600; no copy when on the same filesystem
        except OSError:
            with open(sourcedir.path, "rb") as src, open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                                                         "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, path)
        return path

    def attach(self, name):
        """A job or endpoint by its exact name, a pipeline execution by its id, or the latest job or live endpoint
        whose name starts with `name-` (the base name given with --name). An attached endpoint is not deleted
        when this kernel exits."""
        from ..predictor import Predictor

        if self.endpoints.exists(name):
            return Predictor(self, name, keep=True)
        exact = self.jobs.folder(name).state()
        if exact:
            return self.jobs.attach(name)
        execution = self.pipelines.find(name)
        if execution is not None:
            return execution
        matches = [(job.created, job) for job in self.jobs.list() if job.name.startswith(name + "-")]
        matches += [(created, Predictor(self, found, keep=True))
                    for created, found in self.endpoints.live_names(prefix=name + "-")]
        if not matches:
            raise SmRMagicError(f"no {self.name} job named {name} (nor endpoint) under {self.root}: "
                                "list them with %r_jobs or sm-r-magic jobs")
        return max(matches, key=lambda item: item[0])[1]
