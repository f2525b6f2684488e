"""The embedded default backend: the container's own entrypoint run with this machine's Rscript, in a job
folder laid out like /opt/ml (see jobfolder.py). No Docker, no AWS."""

import atexit
import datetime
import os
import shutil
import signal
import subprocess
import sys
import time

from .. import rtools, spec
from ..errors import SmRMagicError
from ..paths import CONTAINER_DIR, ENTRYPOINT
from . import jobfolder as jf
from .base import Backend, local_model_tarball, local_path
from .endpoint_http import Connections, example, free_port, ping

STATUS_KEY = {"training": "TrainingJobStatus", "processing": "ProcessingJobStatus"}


def _time(value):
    return datetime.datetime.fromtimestamp(value, datetime.timezone.utc) if value else None


def pid_alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _read_lines(path, cursor=None):
    """Whole new lines of a growing log file since byte offset `cursor` -> (lines, new cursor)."""
    offset = cursor or 0
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1  # whole lines only; the rest comes next time
    if not end:
        return [], offset
    return data[:end].decode("utf-8", errors="replace").splitlines(), offset + end


def _die_with_parent():
    """In the server process: SIGTERM when the kernel dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except Exception:
        pass


class LocalBackend(Backend):
    name = "local"
    poll_interval = (0.05, 0.2)  # reading state.json is cheap: notice the end of a short job within 0.2 s

    def __init__(self, config):
        super().__init__(config)
        self._runners = {}  # job name -> Popen, so finished runners are reaped

    # -- folders ---------------------------------------------------------------------------------------
    @property
    def root(self):
        return os.path.abspath(os.path.expanduser(self.config.local_root))

    @property
    def jobs_dir(self):
        return os.path.join(self.root, "jobs")

    def folder(self, name):
        return jf.JobFolder(os.path.join(self.jobs_dir, name))

    # -- before submission -------------------------------------------------------------------------------
    def check_ready(self):
        rtools.require_rscript(self.config.rscript)
        self.check_root()

    def check_root(self):
        """The artifact root must be a folder we can write, or one we can create (nothing is created here)."""
        path = self.root
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
            raise SmRMagicError(f"cannot keep local jobs under {self.root} ({path} is not a writable folder): "
                                '%config RMagic.local_root = "~/sm-r-magic" (or set SM_R_MAGIC_LOCAL_ROOT)')

    def code_uri(self, sourcedir):
        return os.path.join(self.root, "sourcedir", sourcedir.sha256, spec.SOURCEDIR_NAME)

    def data_uri(self, uri, option):
        if uri.startswith("s3://"):
            return uri
        return local_path(uri, option)

    def output_uri(self, uri, option):
        return uri if uri.startswith("s3://") else local_path(uri, option, must_exist=False)

    def training_output_path(self):
        return os.path.join(self.root, "output")

    def processing_output_uri(self, job_name, output_name):
        return os.path.join(self.root, "output", job_name, output_name)

    # -- submission --------------------------------------------------------------------------------------
    def upload(self, sourcedir, data_uris=()):
        path = self.code_uri(sourcedir)
        if not os.path.exists(path):  # content-addressed: identical code is stored once
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.partial"
            with open(tmp, "wb") as fh:
                fh.write(sourcedir.data)
            os.replace(tmp, path)
        return path

    def launch_spec(self, kind, request, folder):
        env = {
            "SM_R_MAGIC_ROOT": folder.root,
            "SM_R_MAGIC_PYTHON": sys.executable,
            "SM_R_MAGIC_RSCRIPT": rtools.find_rscript(self.config.rscript) or self.config.rscript,
            # per-job R packages (container/packages.R): this machine's cached library, reused by later jobs
            "SM_R_MAGIC_R_LIBRARY": os.path.join(self.root, "r-library"),
        }
        env.update(request.get("Environment", {}))
        if kind == "training":
            env["TRAINING_JOB_NAME"] = request["TrainingJobName"]
            argv = ["/bin/sh", ENTRYPOINT, "train"]
        else:
            env["PROCESSING_JOB_NAME"] = request["ProcessingJobName"]
            app = request["AppSpecification"]
            argv = [a.replace(spec.CONTAINER_DIR, CONTAINER_DIR) for a in app.get("ContainerEntrypoint", [])]
            argv += app.get("ContainerArguments", [])
            if argv and argv[0].endswith(".sh"):
                argv.insert(0, "/bin/sh")
        return {"argv": argv, "env": env, "stop_timeout": self.config.stop_timeout}

    def submit(self, kind, request):
        from ..jobs import Job

        name = request["TrainingJobName" if kind == "training" else "ProcessingJobName"]
        folder = self.folder(name)
        if folder.exists():
            raise SmRMagicError(f"a local job named {name} already exists: choose another --name")
        folder.create(kind, request, self.launch_spec(kind, request, folder))
        self._spawn_runner(folder)
        return Job(self, kind, name)

    def _spawn_runner(self, folder):
        env = dict(os.environ)
        package_parent = os.path.dirname(os.path.dirname(CONTAINER_DIR))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        with open(os.path.join(folder.path, "runner.log"), "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "sm_r_magic.backends.local_runner", folder.path],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)  # a kernel interrupt must not reach the job
        self._runners[folder.name] = proc
        folder.update(runner_pid=proc.pid)

    # -- watching --------------------------------------------------------------------------------------
    def _state(self, name):
        folder = self.folder(name)
        state = folder.state()
        if not state:
            raise SmRMagicError(f"no local job named {name} under {self.jobs_dir}")
        proc = self._runners.get(name)
        if proc is not None:
            proc.poll()  # reap
        if state.get("status") == "InProgress":
            pid = state.get("runner_pid")
            if pid and not pid_alive(pid):
                state = folder.state()  # it may have finished between the two reads
                if state.get("status") == "InProgress":
                    folder.finish("Failed", failure_reason="the local job runner ended unexpectedly "
                                                           f"(see {folder.path}/runner.log)")
                    state = folder.state()
        return folder, state

    def describe_job(self, kind, name):
        folder, state = self._state(name)
        kind = state.get("kind", kind)
        request = folder.request()
        desc = dict(request)
        desc[STATUS_KEY[kind]] = state["status"]
        desc["CreationTime"] = _time(state.get("created"))
        desc["LastModifiedTime"] = _time(os.path.getmtime(folder.state_file))
        desc["LocalJobFolder"] = folder.path
        desc["ExitCode"] = state.get("exit_code")
        transitions = [dict(t, StartTime=_time(t.get("StartTime")), EndTime=_time(t.get("EndTime")))
                       for t in state.get("transitions", [])]
        if state.get("failure_reason"):
            desc["FailureReason"] = state["failure_reason"]
        if kind == "training":
            desc["TrainingJobArn"] = f"local:training-job/{name}"
            desc["SecondaryStatus"] = transitions[-1]["Status"] if transitions else "Starting"
            desc["SecondaryStatusTransitions"] = transitions
            desc["TrainingStartTime"] = _time(state.get("started"))
            desc["TrainingEndTime"] = _time(state.get("ended"))
            if state["status"] == "Completed":
                desc["ModelArtifacts"] = {"S3ModelArtifacts": jf.model_artifact_path(request)}
        else:
            desc["ProcessingJobArn"] = f"local:processing-job/{name}"
            desc["SecondaryStatusTransitions"] = transitions  # local only: SageMaker has none for processing
            desc["ProcessingStartTime"] = _time(state.get("started"))
            desc["ProcessingEndTime"] = _time(state.get("ended"))
            if state.get("failure_reason"):
                desc["ExitMessage"] = state["failure_reason"]
        return desc

    def read_logs(self, kind, name, cursor=None):
        return _read_lines(self.folder(name).log_file, cursor)

    def stop_job(self, kind, name):
        folder, state = self._state(name)
        if state.get("status") != "InProgress":
            return False
        pid = state.get("runner_pid")
        if pid_alive(pid):
            os.kill(pid, 15)
            return True
        return False

    def list_jobs(self):
        from ..jobs import Job

        if not os.path.isdir(self.jobs_dir):
            return []
        found = []
        for name in os.listdir(self.jobs_dir):
            state = self.folder(name).state()
            if state:
                created = state.get("created") or 0
                found.append((created, Job(self, state.get("kind", "training"), name, created=created)))
        return [job for _, job in sorted(found, key=lambda item: item[0])]

    def attach(self, name):
        """A job or endpoint by its exact name, or the latest job whose name starts with `name-`."""
        from ..jobs import Job
        from ..predictor import Predictor

        if self.endpoint_folder(name).exists():
            return Predictor(self, name, keep=True)  # attached: not deleted when this kernel exits
        state = self.folder(name).state()
        if state:
            return Job(self, state.get("kind", "training"), name)
        matches = [job for job in self.list_jobs() if job.name.startswith(name + "-")]
        if not matches:
            raise SmRMagicError(f"no local job named {name} under {self.jobs_dir}: "
                                "list them with %r_jobs or sm-r-magic jobs")
        return matches[-1]

    def delete_job_folder(self, name):
        shutil.rmtree(self.folder(name).path, ignore_errors=True)

    # -- endpoints: the container's serve mode as a process on 127.0.0.1 ---------------------------------
    #
    #   <local_root>/endpoints/<endpoint-name>/
    #       requests.json   the CreateModel / CreateEndpointConfig / CreateEndpoint requests
    #       state.json      status (Creating, InService, Failed, Deleted), port, pid, owner, keep
    #       logs.txt        what the R server printed
    #       opt/ml/         the server's root: serve.R extracts model.tar.gz into opt/ml/model
    #
    # deploy, describe, invoke, logs, delete, list and attach are generic over the endpoints_dir property
    # and these hooks, which the docker backend overrides to run the server in a container:
    #   _prepare_server(folder, model) -> (launch, state fields)   before the endpoint exists (may fail)
    #   _start_server(folder, launch, keep) -> state fields         start it (port, pid, or a failure)
    #   _server_running(folder, state) -> (running, reason if dead)
    #   _server_log_lines(folder, cursor) -> (lines, cursor)
    #   _stop_server(folder, state), then _retire_endpoint(folder)
    #   _describe_extra(folder, state) -> backend-specific describe_endpoint keys

    # Wording of the "already exists" / "no such endpoint" errors; a cheap liveness check is also done
    # before each invoke and delete (an expensive one only when the stored status is not InService).
    _exists_advice = "delete it or choose another --name"
    _missing_advice = ": list them with %r_endpoints"
    _cheap_liveness = True

    @property
    def endpoints_dir(self):
        return os.path.join(self.root, "endpoints")

    def endpoint_folder(self, name):
        return jf.JobFolder(os.path.join(self.endpoints_dir, name))

    def model_data_uri(self, uri):
        if uri.startswith("s3://"):
            return uri
        return local_model_tarball(uri)

    def _serve_env(self, folder, model, port, workers):
        container = model["PrimaryContainer"]
        env = {
            "SM_R_MAGIC_ROOT": folder.root,
            "SM_R_MAGIC_PYTHON": sys.executable,
            "SM_R_MAGIC_RSCRIPT": rtools.find_rscript(self.config.rscript) or self.config.rscript,
            "SM_R_MAGIC_R_LIBRARY": os.path.join(self.root, "r-library"),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SM_R_MAGIC_BIND_HOST": "127.0.0.1",
        }
        if workers:
            env["SM_R_MAGIC_WORKERS"] = str(workers)
        env.update(container.get("Environment", {}))
        data = container.get("ModelDataUrl")
        if data:
            if data.startswith("s3://"):
                fetched = os.path.join(folder.path, "model-data")
                jf.fetch(data, fetched)
                data = os.path.join(fetched, os.path.basename(data))
            env["SM_R_MAGIC_MODEL_DATA"] = data[len("file://"):] if data.startswith("file://") else data
        return env

    def _keep_flag(self, keep):
        """The keep flag recorded and returned: local endpoints fold in RMagic.keep_endpoints."""
        return bool(keep or self.config.keep_endpoints)

    def deploy(self, requests, keep=False):
        from ..predictor import Predictor

        self.check_ready()
        model, endpoint = requests["model"], requests["endpoint"]
        name = endpoint["EndpointName"]
        folder = self.endpoint_folder(name)
        if folder.exists():
            raise SmRMagicError(f"a {self.name} endpoint named {name} already exists: {self._exists_advice}")
        os.makedirs(folder.root, exist_ok=True)
        jf.atomic_write_json(os.path.join(folder.path, "requests.json"), requests)
        keep = self._keep_flag(keep)
        launch, fields = self._prepare_server(folder, model)
        now = time.time()
        jf.atomic_write_json(folder.state_file, dict({
            "kind": "endpoint", "status": "Creating", "created": now, "port": None, "pid": None,
            "owner_pid": os.getpid(), "keep": bool(keep), "failure_reason": None,
            "endpoint_config": endpoint.get("EndpointConfigName"), "model": model.get("ModelName"),
        }, **fields))
        folder.update(**self._start_server(folder, launch, bool(keep or self.config.keep_endpoints)))
        if not keep and not getattr(self.config, "keep_endpoints", False):
            atexit.register(self._delete_at_exit, name, now)
        return Predictor(self, name, keep=keep)

    def _prepare_server(self, folder, model):
        port = free_port()
        env = dict(os.environ)
        env.update(self._serve_env(folder, model, port, self.config.workers))
        return env, {"port": port}

    def _start_server(self, folder, env, keep):
        with open(folder.log_file, "ab") as log:
            proc = subprocess.Popen(["/bin/sh", ENTRYPOINT, "serve"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=folder.path, start_new_session=True,
                                    preexec_fn=None if keep else _die_with_parent)
        self._servers[folder.name] = proc
        return {"pid": proc.pid}

    @property
    def _servers(self):
        return self.__dict__.setdefault("_server_procs", {})

    @property
    def _connections(self):
        if "_http" not in self.__dict__:
            self.__dict__["_http"] = Connections()
        return self.__dict__["_http"]

    def _delete_at_exit(self, name, created):
        state = self.endpoint_folder(name).state()
        if state and state.get("created") == created and state.get("status") != "Deleted":
            try:
                self.delete_endpoint(name)
            except Exception:
                pass

    def _endpoint_state(self, name, check=True):
        """(folder, state), the status first brought up to date (unless check is false)."""
        folder = self.endpoint_folder(name)
        state = folder.state()
        if not state:
            raise SmRMagicError(f"no {self.name} endpoint named {name} under {self.endpoints_dir}"
                                + self._missing_advice)
        proc = self._servers.get(name)
        if proc is not None:
            proc.poll()
        if check and state["status"] in ("Creating", "InService"):
            running, reason = self._server_running(folder, state)
            if not running and self._ended_with_owner(folder, state):
                self._connections.close(name)
                self._stop_server(folder, state)  # removes what is left (docker: the exited container)
                self._retire_endpoint(folder)
                state = folder.state() or dict(state, status="Deleted")
            elif not running:
                state = folder.update(status="Failed", failure_reason=reason)
            elif state["status"] == "Creating" and state.get("port") and ping(state["port"]):
                state = folder.update(status="InService", in_service=time.time())
        return folder, state

    def _server_running(self, folder, state):
        if pid_alive(state.get("pid")):
            return True, None
        return False, self._server_failure(folder)

    @staticmethod
    def _owner_gone(state):
        """The endpoint is not kept and the kernel that started it is no longer running."""
        return not state.get("keep") and not pid_alive(state.get("owner_pid"))

    @classmethod
    def _ended_with_owner(cls, folder, state):
        """Whether a server that exited ended with the kernel that started it (not kept, no failure recorded):
        the expected end of such an endpoint (deleted), not a failure."""
        return (bool(state.get("owner_pid")) and cls._owner_gone(state)
                and not jf.failure_message(folder, "training"))

    def _server_failure(self, folder):
        reason = jf.failure_message(folder, "training")
        if reason:
            return reason
        try:
            with open(folder.log_file, errors="replace") as fh:
                tail = [line for line in fh.read().splitlines() if line.strip()][-5:]
        except OSError:
            tail = []
        return "the R server exited" + (": " + "\n".join(tail) if tail else "")

    def describe_endpoint(self, name):
        folder, state = self._endpoint_state(name)
        desc = {
            "EndpointName": name,
            "EndpointConfigName": state.get("endpoint_config"),
            "EndpointStatus": state["status"],
            "CreationTime": _time(state.get("created")),
            "LastModifiedTime": _time(os.path.getmtime(folder.state_file)),
        }
        if state.get("port"):
            desc["LocalUrl"] = f"http://127.0.0.1:{state['port']}"
        desc.update(self._describe_extra(folder, state))
        if state.get("failure_reason"):
            desc["FailureReason"] = state["failure_reason"]
        return desc

    def _describe_extra(self, folder, state):
        return {"EndpointArn": f"local:endpoint/{folder.name}", "LocalEndpointFolder": folder.path,
                "Keep": state.get("keep", False), "OwnerPid": state.get("owner_pid")}

    def invoke_endpoint(self, name, body, content_type, accept):
        folder, state = self._endpoint_state(name, check=self._cheap_liveness)
        if state["status"] != "InService" and not self._cheap_liveness:
            folder, state = self._endpoint_state(name)
        if state["status"] == "Deleted":
            requests = jf.read_json(os.path.join(folder.path, "requests.json"), {})
            model = requests.get("model", {}).get("PrimaryContainer", {}).get("ModelDataUrl")
            raise SmRMagicError(f"{self.name} endpoint {name} was deleted: deploy the model again with %%r_deploy"
                                + (f" --model {model}" if model else "") + " (a new endpoint and predictor)")
        if state["status"] != "InService":
            raise SmRMagicError(f"{self.name} endpoint {name} is {state['status']}, not InService: "
                                + ("wait for it (predictor.wait())" if state["status"] == "Creating"
                                   else "see predictor.failure_reason and predictor.logs()"))
        return self._connections.invoke(name, state["port"], body, content_type, accept)

    def endpoint_example(self, name, content_type):
        """One row of the model's inputs as a request body (the server's GET /prototype), or None."""
        _, state = self._endpoint_state(name, check=self._cheap_liveness)
        if state["status"] != "InService" or not state.get("port"):
            return None
        return example(state["port"], content_type)

    def read_endpoint_logs(self, name, cursor=None):
        return self._server_log_lines(self.endpoint_folder(name), cursor)

    def _server_log_lines(self, folder, cursor):
        return _read_lines(folder.log_file, cursor)

    def delete_endpoint(self, name):
        folder, state = self._endpoint_state(name, check=self._cheap_liveness)
        self._connections.close(name)
        self._stop_server(folder, state)
        self._retire_endpoint(folder)

    def _stop_server(self, folder, state):
        pid = state.get("pid")
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)  # the server and its forked workers
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + self.config.stop_timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                proc = self._servers.get(folder.name)
                if proc is not None:
                    proc.poll()
                time.sleep(0.05)
            if pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)
        proc = self._servers.pop(folder.name, None)
        if proc is not None:
            proc.wait(timeout=5)

    def _retire_endpoint(self, folder):
        folder.update(status="Deleted", deleted=time.time())

    def list_endpoints(self, include_deleted=False):
        from ..predictor import Predictor

        if not os.path.isdir(self.endpoints_dir):
            return []
        found = []
        for name in os.listdir(self.endpoints_dir):
            state = self.endpoint_folder(name).state()
            if state and state.get("status") in ("Creating", "InService") and self._owner_gone(state):
                try:  # its kernel is gone: the server ended with it (deleted) or is left running
                    state = self._endpoint_state(name)[1]
                except SmRMagicError:
                    continue
            if state and (include_deleted or state.get("status") != "Deleted"):
                found.append((state.get("created") or 0, Predictor(self, name, keep=state.get("keep", False))))
        return [p for _, p in sorted(found, key=lambda item: item[0])]
