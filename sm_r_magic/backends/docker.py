"""The docker backend: the same request dicts, job folders and detached runner as the local backend
(folder.py), with the shared R image as the launcher. A job's runner starts

    docker run --rm --name smr-<job> --label sm-r-magic.job=<job> \
        --mount <local_root>/sourcedir (same path, read-only)  so sagemaker_submit_directory resolves
        --mount <local_root>/docker-r-library -> /usr/local/lib/R/sm-cache   per-job packages, cached
        --mount file:// R repositories (same path, read-only)
        [--user UID:GID]  --mount <job folder>/opt/ml -> /opt/ml  [RMagic.docker_run_args]
        -e KEY=VALUE (the request's Environment)  IMAGE train
    (processing: --entrypoint <ContainerEntrypoint[0]> IMAGE <ContainerEntrypoint[1:]> <ContainerArguments>)

and stops it with `docker stop -t <grace> smr-<job>`: SIGTERM reaches R (the image's entrypoint puts tini in
front of R when it runs as PID 1, because PID 1 ignores signals it has no handler for), then SIGKILL.
Containers are removed when they end (--rm) and when stopped. An endpoint is

    docker run -d -p 127.0.0.1:<port>:8080 --name smr-<endpoint> --label sm-r-magic.endpoint=<endpoint> ...
        --mount <model.tar.gz> -> /opt/sm_r_magic_model/model.tar.gz (read-only)  IMAGE serve

kept after it exits (its logs stay readable) until it is deleted; a deleted endpoint's folder is removed, its
last logs kept in docker-endpoints/.deleted/<name>.log until the next deploy.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

from .. import spec
from ..contract import (ENV_BIND_HOST, ENV_BIND_TO_PORT, ENV_MODEL_DATA, ENV_PROCESSING_JOB_NAME, ENV_R_REPOS,
                        ENV_TRAINING_JOB_NAME, ENV_WARMPOOL_CACHE, ENV_WORKERS, OPT_ML, WARMPOOL_CACHE_DIR)
from ..docker_engine import check_image, container_name, docker_cli, first_line
from ..errors import SmRMagicError
from ..paths import container_digest
from ..uris import is_s3, path_of
from . import jobfolder as jf
from .endpoint_http import free_port
from .folder import FolderBackend

IMAGE_LIBRARY = "/usr/local/lib/R/sm-cache"  # the image's R_LIBS_USER and SM_R_MAGIC_R_LIBRARY default
MODEL_MOUNT = "/opt/sm_r_magic_model/model.tar.gz"
JOB_LABEL = "sm-r-magic.job"
ENDPOINT_LABEL = "sm-r-magic.endpoint"
# Exit statuses of `docker run` itself (not of R): say so instead of "R exited with status 125".
DOCKER_EXIT_REASONS = {
    "125": "docker run failed (the container did not start)",
    "126": "the container's command cannot be run",
    "127": "the container's command was not found",
}


def _mount(source, target, readonly=False):
    if "," in source or "," in target:
        raise SmRMagicError(f"the docker backend cannot mount a path with a comma: {source}: rename the folder")
    return ["--mount", f"type=bind,source={source},target={target}" + (",readonly" if readonly else "")]


def _repo_mounts(environment):
    """file:// (or plain path) R repositories named in SM_R_MAGIC_R_REPOS, mounted read-only at the same path."""
    mounts = []
    for repo in re.split(r"[,\s]+", environment.get(ENV_R_REPOS, "") or ""):
        path = path_of(repo) if repo.startswith(("file://", "/")) else None
        if path and os.path.isdir(path):
            mounts += _mount(os.path.abspath(path), os.path.abspath(path), readonly=True)
    return mounts


class DockerLauncher:
    """Runs the container's entrypoint in the shared image."""

    cheap_liveness = False  # docker inspect: only when the stored status is not InService
    _warned = set()  # image ids already warned about (once per process)

    def __init__(self, backend):
        self.backend = backend
        self.config = backend.config
        self._docker = None

    @property
    def docker(self):
        if self._docker is None:
            self._docker = docker_cli()
        return self._docker

    @property
    def library_dir(self):
        """The per-job R package cache shared by docker jobs (the container's R, so not the local one's)."""
        return os.path.join(self.backend.root, "docker-r-library")

    def check_ready(self):
        image = self.config.image
        image_id, digest = check_image(image, self.docker)
        if digest and image_id not in self._warned and digest != container_digest():
            DockerLauncher._warned.add(image_id)
            print(f"sm-r-magic: warning: {image} was built from other container files than this sm-r-magic's "
                  "(rebuild with `sm-r-magic image build` to run the current entrypoint)", file=sys.stderr)

    def extra_run_args(self):
        """Extra `docker run` options (e.g. "--network host --cpus 2"): RMagic.docker_run_args, else
        $SM_R_MAGIC_DOCKER_RUN_ARGS."""
        text = self.config.docker_run_args or os.environ.get("SM_R_MAGIC_DOCKER_RUN_ARGS", "")
        try:
            return shlex.split(text)
        except ValueError as exc:
            raise SmRMagicError(f"docker run options {text!r} do not parse ({exc}): check the quotes") from None

    def _user_args(self, environment):
        """Run as the notebook user so the files R writes into the job folder stay theirs."""
        uid, gid = os.getuid(), os.getgid()
        if uid == 0:
            return []
        return ["--user", f"{uid}:{gid}"] + ([] if "HOME" in environment else ["-e", "HOME=/tmp"])  # no home there

    def run_args(self, name, label, environment, folder, *, detached=False, publish=None, extra_mounts=()):
        """`docker run ...` up to (not including) the image: one container of a job or an endpoint."""
        os.makedirs(self.library_dir, exist_ok=True)
        sourcedir_root = os.path.join(self.backend.root, "sourcedir")
        os.makedirs(sourcedir_root, exist_ok=True)
        os.makedirs(folder.root, exist_ok=True)
        argv = [self.docker, "run"] + (["-d"] if detached else ["--rm"])
        if publish:
            argv += ["-p", publish]
        argv += ["--name", container_name(name), "--label", f"{label}={name}"]
        argv += _mount(sourcedir_root, sourcedir_root, readonly=True)
        argv += _mount(self.library_dir, IMAGE_LIBRARY)
        argv += _repo_mounts(environment)
        argv += self._user_args(environment)
        argv += list(extra_mounts) + _mount(folder.root, OPT_ML) + self.extra_run_args()
        for key, value in environment.items():
            argv += ["-e", f"{key}={value}"]
        return argv

    # -- jobs --------------------------------------------------------------------------------------------
    def job_launch(self, kind, request, folder):
        environment = dict(request.get("Environment", {}))
        mounts = []
        if kind == "training":
            name = request["TrainingJobName"]
            environment.setdefault(ENV_TRAINING_JOB_NAME, name)
            image = request["AlgorithmSpecification"]["TrainingImage"]
            command = [image, "train"]
            if request["ResourceConfig"].get("KeepAlivePeriodInSeconds"):  # as SageMaker's warm pools do
                environment[ENV_WARMPOOL_CACHE] = WARMPOOL_CACHE_DIR
                mounts = _mount(self.backend.warmpool_cache_dir(), WARMPOOL_CACHE_DIR)
        else:
            name = request["ProcessingJobName"]
            environment.setdefault(ENV_PROCESSING_JOB_NAME, name)
            app = request["AppSpecification"]
            entry = list(app.get("ContainerEntrypoint") or [spec.ENTRYPOINT, "process"])
            command = ["--entrypoint", entry[0], app["ImageUri"]] + entry[1:] + list(app.get("ContainerArguments", []))
        argv = self.run_args(name, JOB_LABEL, environment, folder, extra_mounts=mounts) + command
        grace = int(self.config.stop_timeout)
        cname = container_name(name)
        return {
            "argv": argv,
            "env": {},
            # `docker stop` sends SIGTERM and, after the grace period, SIGKILL itself; the runner's own
            # SIGKILL (of the docker client, plus kill_argv) is only a backstop.
            "stop_timeout": grace + 15,
            "stop_argv": [self.docker, "stop", "-t", str(grace), cname],
            "kill_argv": [self.docker, "rm", "-f", cname],
            "exit_reasons": DOCKER_EXIT_REASONS,
            "container": cname,
        }


    def stop_orphan(self, state):
        """The runner is gone but the container may still run: stop it directly."""
        stop = (state.get("launch") or {}).get("stop_argv")
        if not stop:
            return False
        subprocess.run(stop, capture_output=True, timeout=int(self.config.stop_timeout) + 30)
        return True

    # -- endpoint servers --------------------------------------------------------------------------------
    def keep_flag(self, keep):
        return keep  # recorded as given; RMagic.keep_endpoints only skips the deletion at exit

    def prepare_server(self, folder, model):
        container = model["PrimaryContainer"]
        environment = dict(container.get("Environment", {}))
        data = container.get("ModelDataUrl")
        mounts = []
        if data:
            if is_s3(data):
                jf.fetch(data, os.path.join(folder.path, "model-data"))
                data = os.path.join(folder.path, "model-data", os.path.basename(data))
            mounts += _mount(os.path.abspath(path_of(data)), MODEL_MOUNT, readonly=True)
            environment[ENV_MODEL_DATA] = MODEL_MOUNT
        workers = int(self.config.workers or 0)
        if workers and ENV_WORKERS not in environment:
            environment[ENV_WORKERS] = str(workers)
        environment[ENV_BIND_HOST] = "0.0.0.0"  # inside the container; published on 127.0.0.1 only
        environment.pop(ENV_BIND_TO_PORT, None)  # the container listens on 8080, published below
        cname = container_name(folder.name)
        launch = {"environment": environment, "mounts": mounts, "container": cname, "image": container["Image"]}
        return launch, {"container": cname, "image": container["Image"]}

    def start_server(self, folder, launch, outlives_kernel):
        for attempt in range(3):  # a free port can be taken between choosing and binding it
            port = free_port()
            argv = self.run_args(folder.name, ENDPOINT_LABEL, launch["environment"], folder, detached=True,
                                 publish=f"127.0.0.1:{port}:8080", extra_mounts=launch["mounts"])
            proc = subprocess.run(argv + [launch["image"], "serve"], capture_output=True, text=True, timeout=120)
            if proc.returncode == 0 or "port is already allocated" not in proc.stderr or attempt == 2:
                break
            subprocess.run([self.docker, "rm", "-f", launch["container"]], capture_output=True, timeout=60)
        if proc.returncode != 0:
            errors = "\n".join(line for line in proc.stderr.splitlines() if "error" in line.lower())
            return {"status": "Failed", "failure_reason": "docker run failed: " + first_line(errors or proc.stderr)}
        return {"port": port}

    def reap(self, folder):
        """Docker reaps its containers."""

    def _container_state(self, cname):
        proc = subprocess.run([self.docker, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", cname],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return None, None
        status, code = proc.stdout.split()
        return status, int(code)

    def _container_logs(self, folder, state):
        if os.path.exists(folder.log_file):
            with open(folder.log_file, errors="replace") as fh:
                return fh.read()
        proc = subprocess.run([self.docker, "logs", state.get("container") or container_name(folder.name)],
                              capture_output=True, text=True, timeout=60)
        return proc.stdout + proc.stderr if proc.returncode == 0 else ""

    def server_running(self, folder, state):
        running, code = self._container_state(state["container"])
        if running == "running":
            return True, None
        reason = jf.failure_message(folder, "training")
        if not reason:
            tail = [line for line in self._container_logs(folder, state).splitlines() if line.strip()][-3:]
            where = "is gone" if running is None else f"exited with status {code}"
            reason = f"the serving container {where}" + (": " + " / ".join(tail) if tail else "")
        return False, reason

    def server_log_lines(self, folder, cursor):
        state = folder.state()
        if not state:
            return [], cursor
        lines = self._container_logs(folder, state).splitlines()
        start = cursor or 0
        return lines[start:], len(lines)

    def stop_server(self, folder, state):
        cname = state.get("container") or container_name(folder.name)
        grace = int(self.config.stop_timeout)
        subprocess.run([self.docker, "stop", "-t", str(grace), cname], capture_output=True, timeout=grace + 60)
        logs = self._container_logs(folder, state)
        subprocess.run([self.docker, "rm", "-f", cname], capture_output=True, timeout=60)
        deleted = os.path.join(os.path.dirname(folder.path), ".deleted")
        os.makedirs(deleted, exist_ok=True)
        with open(os.path.join(deleted, f"{folder.name}.log"), "w") as fh:
            fh.write(logs)

    def retire(self, folder):
        # Like SageMaker, a deleted endpoint is gone; its last logs stay readable until the next deploy.
        shutil.rmtree(folder.path, ignore_errors=True)

    def describe_extra(self, folder, state):
        return {"EndpointArn": f"local:docker-endpoint/{folder.name}", "Image": state.get("image"),
                "Container": state.get("container")}


class DockerBackend(FolderBackend):
    name = "docker"
    poll_interval = (0.1, 0.5)
    jobs_subdir = "docker-jobs"
    endpoints_subdir = "docker-endpoints"
    launcher_class = DockerLauncher
