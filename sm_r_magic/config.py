"""Settings as a traitlets Configurable: `%config RMagic.backend = "sagemaker"`, ipython_config.py, or the
environment (`SM_R_MAGIC_BACKEND=...`). Precedence: %config / ipython_config > environment > default."""

import os
import sys

from traitlets import Bool, CaselessStrEnum, Int, Unicode, default
from traitlets.config import Configurable

ENV_PREFIX = "SM_R_MAGIC_"
BACKENDS = ("local", "docker", "sagemaker")


class RMagic(Configurable):
    """Settings of the sm-r-magic magics (%r_processing, %r_train, %r_deploy)."""

    backend = CaselessStrEnum(BACKENDS, default_value="local",
                              help="Where jobs run: local (this machine's R), docker (the shared image), "
                                   "sagemaker (the real service).").tag(config=True)
    local_root = Unicode(help="Folder where local and docker jobs keep their job folders, sourcedir.tar.gz, "
                              "model.tar.gz and outputs (default ~/.sm-r-magic).").tag(config=True)
    rscript = Unicode("Rscript", help="The Rscript used by the local backend and for syntax checks.").tag(config=True)
    instance_type = Unicode("ml.m5.large", help="Default instance type of jobs.").tag(config=True)
    instance_count = Int(1, help="Default instance count of jobs.").tag(config=True)
    endpoint_instance_type = Unicode("ml.m5.large", help="Default instance type of endpoints.").tag(config=True)
    volume_size = Int(30, help="EBS volume size (GB) of jobs.").tag(config=True)
    max_runtime = Int(24 * 3600, help="Stopping condition: maximum runtime of a job in seconds.").tag(config=True)
    image = Unicode(help="Image URI of the shared R container (sagemaker: an ECR URI, see "
                         "`sm-r-magic image build --push`; docker: a local tag).").tag(config=True)
    role = Unicode(help="SageMaker execution role ARN (discovered on SageMaker notebooks/Studio).").tag(config=True)
    region = Unicode(help="AWS region (default: boto3's).").tag(config=True)
    bucket = Unicode(help="S3 bucket for code and data (default sagemaker-{region}-{account}).").tag(config=True)
    prefix = Unicode("sm-r-magic", help="S3 key prefix under the bucket.").tag(config=True)
    wait = Bool(True, help="Wait for jobs and show progress (False: like --async).").tag(config=True)
    progress = CaselessStrEnum(("auto", "widget", "text", "none"), default_value="auto",
                               help="How progress is shown: widgets in a notebook, text lines elsewhere.").tag(config=True)
    stop_timeout = Int(10, help="Seconds a stopped local job gets between SIGTERM and SIGKILL.").tag(config=True)
    workers = Int(0, help="R worker processes per endpoint (0: one per CPU).").tag(config=True)
    keep_endpoints = Bool(False, help="Keep local endpoints running after the kernel shuts down.").tag(config=True)
    docker_run_args = Unicode("", help="Extra `docker run` options for docker-backend jobs and endpoints, e.g. "
                                       "'--network host --cpus 2'.").tag(config=True)
    warm_processes = Bool(True, help="Keep R warm in the background: a parser for the syntax check and, for local "
                                     "jobs, one pre-started R per job kind (single use).").tag(config=True)
    r_repos = Unicode("https://cloud.r-project.org",
                      help="R package repository for per-job packages (--packages).").tag(config=True)

    @default("local_root")
    def _default_local_root(self):
        return os.path.join(os.path.expanduser("~"), ".sm-r-magic")

    @default("image")
    def _default_image(self):
        return "sm-r-magic:latest"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._apply_environment(set(kwargs))

    def _apply_environment(self, explicit):
        """SM_R_MAGIC_<NAME> variables, unless %config/ipython_config gave the setting. A bad value is
        ignored with a one-line warning naming the variable: it must not stop the magics from loading."""
        configured = set(self.config.get(type(self).__name__, {}))
        for name in self.trait_names(config=True):
            value = os.environ.get(ENV_PREFIX + name.upper())
            if value is None or name in explicit or name in configured:
                continue
            try:
                setattr(self, name, self.traits()[name].from_string(value))
            except Exception as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                sys.stderr.write(f"sm-r-magic: ignoring {ENV_PREFIX}{name.upper()}={value!r} ({reason}); "
                                 f"using RMagic.{name} = {getattr(self, name)!r}\n")

    def describe(self):
        return {name: getattr(self, name) for name in sorted(self.trait_names(config=True))}


_current = None


def current():
    """The settings in force: the kernel's RMagic instance once the extension is loaded."""
    global _current
    if _current is None:
        _current = RMagic()
    return _current


def set_current(config):
    global _current
    _current = config
    return config
