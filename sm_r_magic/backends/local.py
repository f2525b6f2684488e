"""The embedded default backend: the container's own entrypoint run with this machine's Rscript, in a job
folder laid out like /opt/ml (see jobfolder.py). No Docker, no AWS."""

import datetime
import os
import shutil
import subprocess
import sys

from .. import rtools, spec
from ..errors import SmRMagicError
from ..paths import CONTAINER_DIR, ENTRYPOINT
from . import jobfolder as jf
from .base import Backend, local_path

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


class LocalBackend(Backend):
    name = "local"
    poll_interval = (0.05, 0.5)

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
        offset = cursor or 0
        try:
            with open(self.folder(name).log_file, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except OSError:
            return [], offset
        end = data.rfind(b"\n") + 1  # whole lines only; the rest comes next time
        if not end:
            return [], offset
        text = data[:end].decode("utf-8", errors="replace")
        return text.splitlines(), offset + end

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
                found.append((state.get("created") or 0, Job(self, state.get("kind", "training"), name)))
        return [job for _, job in sorted(found, key=lambda item: item[0])]

    def attach(self, name):
        """A job by its exact name, or the latest whose name starts with `name-`."""
        from ..jobs import Job

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
