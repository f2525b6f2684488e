"""The docker backend: the same request dicts as the local backend, run in the shared R image.

It is the local backend (same job folders, same detached runner, same staging and publishing of inputs
and outputs) with a different launch command: instead of this machine's Rscript, the runner starts

    docker run --rm --name smr-<job> \
        --mount <job folder>/opt/ml -> /opt/ml                 the container's SageMaker root
        --mount <local_root>/sourcedir (same path, read-only)  so sagemaker_submit_directory resolves
        --mount <local_root>/docker-r-library -> /usr/local/lib/R/sm-cache   per-job packages, cached
        --mount file:// R repositories (same path, read-only)
        [--user UID:GID]  -e KEY=VALUE (the request's Environment)  IMAGE train
    (processing: --entrypoint <ContainerEntrypoint[0]> IMAGE <ContainerEntrypoint[1:]> <ContainerArguments>)

and stops it with `docker stop -t <grace> smr-<job>`: SIGTERM reaches R (the image's entrypoint puts tini
in front of R when it runs as PID 1, because PID 1 ignores signals it has no handler for), then SIGKILL.
Containers are removed when they end (--rm) and when stopped. Endpoints run `docker run -d -p
127.0.0.1:<port>:8080 IMAGE serve` (see the endpoint section below).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

from .. import spec
from ..docker_engine import check_image, container_name, docker_cli
from ..docker_engine import first_line as _first_line
from ..errors import SmRMagicError
from . import jobfolder as jf
from .endpoint_http import free_port
from .local import LocalBackend

IMAGE_LIBRARY = "/usr/local/lib/R/sm-cache"  # the image's R_LIBS_USER and SM_R_MAGIC_R_LIBRARY default
LABEL = "sm-r-magic.job"
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
    for repo in re.split(r"[,\s]+", environment.get("SM_R_MAGIC_R_REPOS", "") or ""):
        path = repo[len("file://"):] if repo.startswith("file://") else repo if repo.startswith("/") else None
        if path and os.path.isdir(path):
            mounts += _mount(os.path.abspath(path), os.path.abspath(path), readonly=True)
    return mounts


class DockerBackend(LocalBackend):
    name = "docker"
    poll_interval = (0.1, 0.5)

    # -- folders ---------------------------------------------------------------------------------------
    @property
    def jobs_dir(self):
        return os.path.join(self.root, "docker-jobs")

    @property
    def library_dir(self):
        """The per-job R package cache shared by docker jobs (the container's R, so not the local one's)."""
        return os.path.join(self.root, "docker-r-library")

    # -- before submission -------------------------------------------------------------------------------
    _warned = set()

    def check_ready(self):
        self.check_root()
        self.docker = docker_cli()
        image_id, digest = check_image(self.image(), self.docker)
        if digest and image_id not in self._warned:
            from ..paths import container_digest

            if digest != container_digest():
                DockerBackend._warned.add(image_id)
                print(f"sm-r-magic: warning: {self.image()} was built from other container files than this "
                      "sm-r-magic's (rebuild with `sm-r-magic image build` to run the current entrypoint)",
                      file=sys.stderr)

    def extra_run_args(self):
        """Extra `docker run` options (e.g. "--network host --cpus 2"): RMagic.docker_run_args when that
        setting exists, else $SM_R_MAGIC_DOCKER_RUN_ARGS."""
        text = getattr(self.config, "docker_run_args", None) or os.environ.get("SM_R_MAGIC_DOCKER_RUN_ARGS", "")
        try:
            return shlex.split(text)
        except ValueError as exc:
            raise SmRMagicError(f"docker run options {text!r} do not parse ({exc}): check the quotes") from None

    def _user_args(self, environment):
        """Run as the notebook user so the files R writes into the job folder stay theirs."""
        uid, gid = os.getuid(), os.getgid()
        if uid == 0:
            return []
        args = ["--user", f"{uid}:{gid}"]
        if "HOME" not in environment:
            args += ["-e", "HOME=/tmp"]  # that uid has no home in the image
        return args

    def _common_run_args(self, name, environment):
        docker = getattr(self, "docker", None) or docker_cli()
        os.makedirs(self.library_dir, exist_ok=True)
        sourcedir_root = os.path.join(self.root, "sourcedir")
        os.makedirs(sourcedir_root, exist_ok=True)
        argv = [docker, "run", "--rm", "--name", container_name(name), "--label", f"{LABEL}={name}"]
        argv += _mount(sourcedir_root, sourcedir_root, readonly=True)
        argv += _mount(self.library_dir, IMAGE_LIBRARY)
        argv += _repo_mounts(environment)
        argv += self._user_args(environment)
        return docker, argv

    def launch_spec(self, kind, request, folder):
        environment = dict(request.get("Environment", {}))
        if kind == "training":
            name = request["TrainingJobName"]
            environment.setdefault("TRAINING_JOB_NAME", name)
            image = request["AlgorithmSpecification"]["TrainingImage"]
        else:
            name = request["ProcessingJobName"]
            environment.setdefault("PROCESSING_JOB_NAME", name)
            image = request["AppSpecification"]["ImageUri"]
        docker, argv = self._common_run_args(name, environment)
        os.makedirs(folder.root, exist_ok=True)
        argv += _mount(folder.root, "/opt/ml")
        argv += self.extra_run_args()
        for key, value in environment.items():
            argv += ["-e", f"{key}={value}"]
        if kind == "training":
            argv += [image, "train"]
        else:
            app = request["AppSpecification"]
            entry = list(app.get("ContainerEntrypoint") or [spec.ENTRYPOINT, "process"])
            argv += ["--entrypoint", entry[0], image] + entry[1:] + list(app.get("ContainerArguments", []))
        grace = int(self.config.stop_timeout)
        cname = container_name(name)
        return {
            "argv": argv,
            "env": {},
            # `docker stop` sends SIGTERM and, after the grace period, SIGKILL itself; the runner's own
            # SIGKILL (of the docker client, plus kill_argv) is only a backstop.
            "stop_timeout": grace + 15,
            "stop_argv": [docker, "stop", "-t", str(grace), cname],
            "kill_argv": [docker, "rm", "-f", cname],
            "exit_reasons": DOCKER_EXIT_REASONS,
            "container": cname,
        }

    def stop_job(self, kind, name):
        folder, state = self._state(name)
        if state.get("status") != "InProgress":
            return False
        if super().stop_job(kind, name):
            return True
        # The runner is gone but the container may still run: stop it directly.
        launch = state.get("launch") or {}
        if launch.get("stop_argv"):
            subprocess.run(launch["stop_argv"], capture_output=True, timeout=int(self.config.stop_timeout) + 30)
            return True
        return False

    def container_exists(self, name):
        docker = getattr(self, "docker", None) or docker_cli()
        proc = subprocess.run([docker, "ps", "-a", "-q", "--filter", f"name=^{container_name(name)}$"],
                              capture_output=True, text=True, timeout=30)
        return bool(proc.stdout.strip())

    # -- endpoints: `docker run -d -p 127.0.0.1:<port>:8080 IMAGE serve` ------------------------------------
    #
    #   <local_root>/docker-endpoints/<endpoint-name>/
    #       requests.json   the CreateModel / CreateEndpointConfig / CreateEndpoint requests
    #       state.json      status (Creating, InService, Failed), port, container, failure reason
    #       opt/ml/         mounted at /opt/ml (the model is extracted into opt/ml/model by serve.R)
    #       logs.txt        the container's output, saved when it is deleted
    # The model.tar.gz (a local path; s3:// is downloaded first) is mounted read-only and named by
    # SM_R_MAGIC_MODEL_DATA; the sourcedir folder and the R package cache are mounted as for jobs, so
    # SAGEMAKER_SUBMIT_DIRECTORY paths resolve and packages installed by docker jobs load.
    # deploy, describe, invoke, logs, delete, list and attach are the local backend's (see its endpoint
    # section); only launching, the liveness check, the logs and stopping differ. A deleted endpoint's folder
    # is removed (its last logs stay in docker-endpoints/.deleted/<name>.log until the next deploy).

    MODEL_MOUNT = "/opt/sm_r_magic_model/model.tar.gz"
    _exists_advice = "delete it first or choose another --name"
    _missing_advice = ""
    _cheap_liveness = False  # docker inspect: only when the stored status is not InService

    @property
    def endpoints_dir(self):
        return os.path.join(self.root, "docker-endpoints")

    def _keep_flag(self, keep):
        return keep  # recorded as given; RMagic.keep_endpoints only skips the deletion at exit

    def _prepare_server(self, folder, model):
        from ..paths import container_s3

        name = folder.name
        container = model["PrimaryContainer"]
        environment = dict(container.get("Environment", {}))
        data = container.get("ModelDataUrl")
        mounts = []
        if data:
            if data.startswith("s3://"):
                container_s3().fetch(data, os.path.join(folder.path, "model-data"), quiet=True)
                data = os.path.join(folder.path, "model-data", os.path.basename(data))
            data = data[len("file://"):] if data.startswith("file://") else data
            mounts += _mount(os.path.abspath(data), self.MODEL_MOUNT, readonly=True)
            environment["SM_R_MAGIC_MODEL_DATA"] = self.MODEL_MOUNT
        workers = int(getattr(self.config, "workers", 0) or 0)
        if workers and "SM_R_MAGIC_WORKERS" not in environment:
            environment["SM_R_MAGIC_WORKERS"] = str(workers)
        environment["SM_R_MAGIC_BIND_HOST"] = "0.0.0.0"  # inside the container; published on 127.0.0.1 only
        environment.pop("SAGEMAKER_BIND_TO_PORT", None)  # the container listens on 8080, published below
        cname = container_name(name)
        docker, argv = self._common_run_args(name, environment)
        argv = [a for a in argv if a != "--rm"]  # keep an exited container's logs until delete
        argv[argv.index(f"{LABEL}={name}")] = f"sm-r-magic.endpoint={name}"
        argv += mounts + _mount(folder.root, "/opt/ml") + self.extra_run_args()
        for key, value in environment.items():
            argv += ["-e", f"{key}={value}"]
        launch = {"docker": docker, "argv": argv, "container": cname, "image": container["Image"]}
        return launch, {"container": cname, "image": container["Image"]}

    def _start_server(self, folder, launch, keep):
        docker, argv = launch["docker"], launch["argv"]
        for attempt in range(3):  # a free port can be taken between choosing and binding it
            port = free_port()
            run = argv[:2] + ["-d", "-p", f"127.0.0.1:{port}:8080"] + argv[2:] + [launch["image"], "serve"]
            proc = subprocess.run(run, capture_output=True, text=True, timeout=120)
            if proc.returncode == 0 or "port is already allocated" not in proc.stderr or attempt == 2:
                break
            subprocess.run([docker, "rm", "-f", launch["container"]], capture_output=True, timeout=60)
        if proc.returncode != 0:
            return {"status": "Failed", "failure_reason": "docker run failed: " + _first_line(
                "\n".join(l for l in proc.stderr.splitlines() if "error" in l.lower()) or proc.stderr)}
        return {"port": port}

    def _container_state(self, cname):
        docker = getattr(self, "docker", None) or docker_cli()
        proc = subprocess.run([docker, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", cname],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return None, None
        status, code = proc.stdout.split()
        return status, int(code)

    def _container_logs(self, folder, state):
        if os.path.exists(folder.log_file):
            with open(folder.log_file, errors="replace") as fh:
                return fh.read()
        docker = getattr(self, "docker", None) or docker_cli()
        proc = subprocess.run([docker, "logs", state.get("container") or container_name(folder.name)],
                              capture_output=True, text=True, timeout=60)
        return proc.stdout + proc.stderr if proc.returncode == 0 else ""

    def _server_running(self, folder, state):
        running, code = self._container_state(state["container"])
        if running == "running":
            return True, None
        reason = jf.failure_message(folder, "training")
        if not reason:
            tail = [l for l in self._container_logs(folder, state).splitlines() if l.strip()][-3:]
            where = "is gone" if running is None else f"exited with status {code}"
            reason = f"the serving container {where}" + (": " + " / ".join(tail) if tail else "")
        return False, reason

    def _describe_extra(self, folder, state):
        return {"EndpointArn": f"local:docker-endpoint/{folder.name}", "Image": state.get("image"),
                "Container": state.get("container")}

    def _server_log_lines(self, folder, cursor):
        state = folder.state()
        if not state:
            return [], cursor
        lines = self._container_logs(folder, state).splitlines()
        start = cursor or 0
        return lines[start:], len(lines)

    def _stop_server(self, folder, state):
        docker = getattr(self, "docker", None) or docker_cli()
        cname = state.get("container") or container_name(folder.name)
        subprocess.run([docker, "stop", "-t", str(int(self.config.stop_timeout)), cname], capture_output=True,
                       timeout=int(self.config.stop_timeout) + 60)
        logs = self._container_logs(folder, state)
        subprocess.run([docker, "rm", "-f", cname], capture_output=True, timeout=60)
        os.makedirs(os.path.join(self.endpoints_dir, ".deleted"), exist_ok=True)
        with open(os.path.join(self.endpoints_dir, ".deleted", f"{folder.name}.log"), "w") as fh:
            fh.write(logs)

    def _retire_endpoint(self, folder):
        # Like SageMaker, a deleted endpoint is gone; its last logs stay readable until the next deploy.
        shutil.rmtree(folder.path, ignore_errors=True)
