"""The embedded default backend: the container's own entrypoint run with this machine's Rscript, in a job folder
laid out like /opt/ml (see folder.py and jobfolder.py). No Docker, no AWS. Endpoints are the entrypoint's serve
mode as a process on 127.0.0.1, in its own process group (the server and its workers end together)."""

import os
import signal
import subprocess
import sys
import threading
import time

from .. import rtools, spec, warm_processes
from ..contract import (ENV_BIND_HOST, ENV_BIND_TO_PORT, ENV_MODEL_DATA, ENV_PROCESSING_JOB_NAME, ENV_PYTHON,
                        ENV_R_LIBRARY, ENV_ROOT, ENV_RSCRIPT, ENV_TRAINING_JOB_NAME, ENV_WARMPOOL_CACHE, ENV_WORKERS)
from ..paths import CONTAINER_DIR, ENTRYPOINT
from ..uris import is_s3, path_of
from . import jobfolder as jf
from .endpoint_http import free_port
from .folder import FolderBackend
from .processes import die_with_parent, pid_alive, read_new_lines


class ProcessLauncher:
    """Runs the container's entrypoint as a process of this machine."""

    cheap_liveness = True  # a pid check before each invoke and delete

    def __init__(self, backend):
        self.backend = backend
        self.config = backend.config
        self._servers = {}  # endpoint name -> Popen of its server, so it is reaped

    def check_ready(self):
        rtools.require_rscript(self.config.rscript)

    def _base_env(self, root):
        return {
            ENV_ROOT: root,
            ENV_PYTHON: sys.executable,
            ENV_RSCRIPT: rtools.find_rscript(self.config.rscript) or self.config.rscript,
            # per-job R packages (container/packages.R): this machine's cached library, reused by later jobs
            ENV_R_LIBRARY: os.path.join(self.backend.root, "r-library"),
        }

    # -- jobs --------------------------------------------------------------------------------------------
    def job_launch(self, kind, request, folder):
        env = self._base_env(folder.root)
        env.update(request.get("Environment", {}))
        if kind == "training":
            env[ENV_TRAINING_JOB_NAME] = request["TrainingJobName"]
            if request["ResourceConfig"].get("KeepAlivePeriodInSeconds"):  # as SageMaker's warm pools do
                env[ENV_WARMPOOL_CACHE] = self.backend.warmpool_cache_dir()
            argv = ["/bin/sh", ENTRYPOINT, "train"]
        else:
            env[ENV_PROCESSING_JOB_NAME] = request["ProcessingJobName"]
            app = request["AppSpecification"]
            argv = [a.replace(spec.CONTAINER_DIR, CONTAINER_DIR) for a in app.get("ContainerEntrypoint", [])]
            argv += app.get("ContainerArguments", [])
            if argv and argv[0].endswith(".sh"):
                argv.insert(0, "/bin/sh")
        return {"argv": argv, "env": env, "stop_timeout": self.config.stop_timeout}

    # -- warm runners (warm_pool.py) ---------------------------------------------------------------------
    def warm_runner(self, kind, folder, launch, runner_env):
        """A pre-started runner handed this job, or None (FolderJobs starts a cold one)."""
        rscript = rtools.find_rscript(self.config.rscript)
        if not rscript or not warm_processes.enabled(self.config):
            return None
        from .warm_pool import POOL

        return POOL.take(kind, folder, launch, runner_env, rscript, self.backend.root)

    def prestart(self):
        """Have a warm runner of each job kind ready (in the background; returns at once): training first, the
        processing one once the training one waits, so that they do not share the CPU with each other while the
        first cell may need one. Not before the local root exists: loading the extension creates nothing (the
        first job creates it, and refills the pool)."""
        rscript = rtools.find_rscript(self.config.rscript)
        if not (rscript and warm_processes.enabled(self.config) and os.path.isdir(self.backend.root)):
            return
        from .warm_pool import POOL

        root = self.backend.root
        POOL.fill("training", root, rscript)

        def then_processing():
            deadline = time.monotonic() + 30
            while not POOL.ready("training") and time.monotonic() < deadline:
                time.sleep(0.02)
            POOL.fill("processing", root, rscript)

        threading.Thread(target=then_processing, name="sm-r-magic-prestart", daemon=True).start()

    def stop_orphan(self, state):
        return False

    # -- endpoint servers --------------------------------------------------------------------------------
    def keep_flag(self, keep):
        """The keep flag recorded: local endpoints fold in RMagic.keep_endpoints."""
        return bool(keep or self.config.keep_endpoints)

    def prepare_server(self, folder, model):
        port = free_port()
        env = dict(os.environ)
        env.update(self._serve_env(folder, model, port))
        return env, {"port": port}

    def _serve_env(self, folder, model, port):
        container = model["PrimaryContainer"]
        env = self._base_env(folder.root)
        env.update({ENV_BIND_TO_PORT: str(port), ENV_BIND_HOST: "127.0.0.1"})
        if self.config.workers:
            env[ENV_WORKERS] = str(self.config.workers)
        env.update(container.get("Environment", {}))
        data = container.get("ModelDataUrl")
        if data:
            if is_s3(data):
                fetched = os.path.join(folder.path, "model-data")
                jf.fetch(data, fetched)
                data = os.path.join(fetched, os.path.basename(data))
            env[ENV_MODEL_DATA] = path_of(data)
        return env

    def start_server(self, folder, env, outlives_kernel):
        with open(folder.log_file, "ab") as log:
            proc = subprocess.Popen(["/bin/sh", ENTRYPOINT, "serve"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=folder.path, start_new_session=True,
                                    preexec_fn=None if outlives_kernel else die_with_parent)
        self._servers[folder.name] = proc
        return {"pid": proc.pid}

    def reap(self, folder):
        proc = self._servers.get(folder.name)
        if proc is not None:
            proc.poll()

    def server_running(self, folder, state):
        if pid_alive(state.get("pid")):
            return True, None
        reason = jf.failure_message(folder, "training")
        if not reason:
            tail = []
            try:
                with open(folder.log_file, errors="replace") as fh:
                    tail = [line for line in fh.read().splitlines() if line.strip()][-5:]
            except OSError:
                pass
            reason = "the R server exited" + (": " + "\n".join(tail) if tail else "")
        return False, reason

    def server_log_lines(self, folder, cursor):
        return read_new_lines(folder.log_file, cursor)

    def stop_server(self, folder, state):
        pid = state.get("pid")
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)  # the server and its workers
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + self.config.stop_timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                self.reap(folder)
                time.sleep(0.05)
            if pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)
        proc = self._servers.pop(folder.name, None)
        if proc is not None:
            proc.wait(timeout=5)

    def retire(self, folder):
        folder.update(status="Deleted", deleted=time.time())

    def describe_extra(self, folder, state):
        return {"EndpointArn": f"local:endpoint/{folder.name}", "LocalEndpointFolder": folder.path,
                "Keep": state.get("keep", False), "OwnerPid": state.get("owner_pid")}


class LocalBackend(FolderBackend):
    name = "local"
    poll_interval = (0.01, 0.2)  # reading state.json is cheap (~0.2 ms): a young job's end is seen within 10 ms,
    young_polls = 100            # for its first second, then polls back off to 0.2 s
    launcher_class = ProcessLauncher
