"""The job-folder engine of the local and docker backends: a job is a folder laid out like /opt/ml (see
jobfolder.py) run to its end by a detached runner process (local_runner.py); its launcher says which command
runs the container (this machine's Rscript, or `docker run`). Describe, logs, stop, list and attach read the
folder, so a job is found again after a kernel restart."""

import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from ..contract import NAME_KEY, STATUS_KEY
from .. import warm_processes
from ..errors import SmRMagicError
from ..paths import CONTAINER_DIR
from . import jobfolder as jf
from .processes import pid_alive, read_new_lines

_JOB_ARN = re.compile(r"^local:(training|processing)-job/([A-Za-z0-9-]+)$")


def runner_environment():
    """The environment of a job runner: this process's, with this package importable (and without the marks of a
    warm process, should this process have inherited them: with SM_R_MAGIC_WARM set, R waits for a job)."""
    env = {k: v for k, v in os.environ.items() if k not in warm_processes.MARKS}
    package_parent = os.path.dirname(os.path.dirname(CONTAINER_DIR))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


def epoch_to_utc(value):
    return datetime.datetime.fromtimestamp(value, datetime.timezone.utc) if value else None


class FolderJobs:
    def __init__(self, backend, subdir, launcher):
        self.backend = backend
        self.subdir = subdir
        self.launcher = launcher
        self._runners = {}  # job name -> Popen, so finished runners are reaped

    @property
    def jobs_dir(self):
        return os.path.join(self.backend.root, self.subdir)  # the root is a setting: it may change

    def folder(self, name):
        return jf.JobFolder(os.path.join(self.jobs_dir, name))

    # -- submission --------------------------------------------------------------------------------------
    def submit(self, kind, request):
        from ..jobs import Job

        name = request[NAME_KEY[kind]]
        folder = self.folder(name)
        if folder.exists():
            raise SmRMagicError(f"a {self.backend.name} job named {name} already exists: choose another --name")
        launch = self.launcher.job_launch(kind, request, folder)
        folder.create(kind, request, launch)
        self._spawn_runner(folder, kind, launch)
        return Job(self.backend, kind, name)

    def _spawn_runner(self, folder, kind, launch):
        env = runner_environment()
        take_warm = getattr(self.launcher, "warm_runner", None)  # local: a pre-started runner (warm_pool.py)
        proc = take_warm(kind, folder, launch, env) if take_warm else None
        if proc is None:
            # SIGTERM blocked until the runner's handler is in place (the mask survives exec): a stop right after
            # submission is then handled by the runner (the job ends Stopped), not fatal to it
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            try:
                with open(os.path.join(folder.path, "runner.log"), "ab") as log:
                    proc = subprocess.Popen([sys.executable, "-m", "sm_r_magic.backends.local_runner", folder.path],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)  # a kernel interrupt must not reach the job
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            folder.update(runner_pid=proc.pid)  # (a warm runner's pid is recorded before its hand-off)
        self._runners[folder.name] = proc

    # -- watching --------------------------------------------------------------------------------------
    def state(self, name):
        """(folder, state): a job whose runner died is marked Failed here (and what it left is cleaned up)."""
        folder = self.folder(name)
        state = folder.state()
        if not state:
            raise SmRMagicError(f"no {self.backend.name} job named {name} under {self.jobs_dir}")
        proc = self._runners.get(name)
        if proc is not None:
            proc.poll()  # reap
        if state.get("status") == "InProgress":
            pid = state.get("runner_pid")
            if pid and not pid_alive(pid):
                state = folder.state()  # it may have finished between the two reads
                if state.get("status") == "InProgress":
                    folder.finish("Failed", failure_reason=self._runner_lost(folder, state, proc))
                    state = folder.state()
        return folder, state

    def _runner_lost(self, folder, state, proc=None):
        """The runner died without recording the job's end (kill -9, the OOM killer: it records every other
        end itself). Its child got SIGTERM from the kernel (local_runner._end_with); here the rest is ended:
        the child's process group (what R started) and, for docker, the container. Returns the failure reason."""
        pid = state.get("runner_pid")
        how = "was killed"  # started by another kernel: how it ended is not known here, but only a kill is left
        if proc is not None and proc.returncode is not None and proc.returncode < 0:
            how = f"was killed by {signal.Signals(-proc.returncode).name}"
        elif proc is not None and proc.returncode is not None:
            how = f"exited with status {proc.returncode} without recording the job's end"
        launch = state.get("launch") or {}
        child = state.get("child_pid")
        if child:
            try:
                os.killpg(child, signal.SIGKILL)  # its own session (start_new_session): R and what R started
            except (ProcessLookupError, PermissionError):
                pass
        if launch.get("kill_argv"):
            try:  # the docker client's end does not end its container
                subprocess.run(launch["kill_argv"], capture_output=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass
        deadline = time.monotonic() + 5
        while child and pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not child:
            outcome = " while preparing the job"
        elif pid_alive(child):
            outcome = f"; the job's process (pid {child}) could not be stopped: kill it"
        elif launch.get("container"):
            outcome = f"; its container {launch['container']} was removed with it"
        else:
            outcome = "; R was stopped with it"
        return f"the local job runner (pid {pid}) {how}{outcome} (see {folder.path}/runner.log)"

    def describe(self, kind, name):
        folder, state = self.state(name)
        kind = state.get("kind", kind)
        request = folder.request()
        desc = dict(request)
        desc[STATUS_KEY[kind]] = state["status"]
        desc["CreationTime"] = epoch_to_utc(state.get("created"))
        desc["LastModifiedTime"] = epoch_to_utc(os.path.getmtime(folder.state_file))
        desc["LocalJobFolder"] = folder.path
        desc["ExitCode"] = state.get("exit_code")
        transitions = [dict(t, StartTime=epoch_to_utc(t.get("StartTime")), EndTime=epoch_to_utc(t.get("EndTime")))
                       for t in state.get("transitions", [])]
        if state.get("failure_reason"):
            desc["FailureReason"] = state["failure_reason"]
        started, ended = epoch_to_utc(state.get("started")), epoch_to_utc(state.get("ended"))
        if kind == "training":
            desc["TrainingJobArn"] = f"local:training-job/{name}"
            desc["SecondaryStatus"] = transitions[-1]["Status"] if transitions else "Starting"
            desc["SecondaryStatusTransitions"] = transitions
            desc["TrainingStartTime"], desc["TrainingEndTime"] = started, ended
            if state["status"] == "Completed":
                desc["ModelArtifacts"] = {"S3ModelArtifacts": jf.model_artifact_path(request)}
        else:
            desc["ProcessingJobArn"] = f"local:processing-job/{name}"
            desc["SecondaryStatusTransitions"] = transitions  # local only: SageMaker has none for processing
            desc["ProcessingStartTime"], desc["ProcessingEndTime"] = started, ended
            if state.get("failure_reason"):
                desc["ExitMessage"] = state["failure_reason"]
        return desc

    def read_logs(self, kind, name, cursor=None):
        return read_new_lines(self.folder(name).log_file, cursor)

    def stop(self, kind, name):
        folder, state = self.state(name)
        if state.get("status") != "InProgress":
            return False
        pid = state.get("runner_pid")
        if pid_alive(pid):
            os.kill(pid, 15)
            return True
        return self.launcher.stop_orphan(state)

    # -- listing -----------------------------------------------------------------------------------------
    def list(self):
        from ..jobs import Job

        if not os.path.isdir(self.jobs_dir):
            return []
        found = []
        for name in os.listdir(self.jobs_dir):
            state = self.folder(name).state()
            if state:
                created = state.get("created") or 0
                found.append((created, Job(self.backend, state.get("kind", "training"), name, created=created)))
        return [job for _, job in sorted(found, key=lambda item: item[0])]

    def attach(self, name):
        """The job of that exact name, or the latest whose name starts with `name-`; None if there is none."""
        from ..jobs import Job

        state = self.folder(name).state()
        if state:
            return Job(self.backend, state.get("kind", "training"), name)
        matches = [job for job in self.list() if job.name.startswith(name + "-")]
        return matches[-1] if matches else None

    def from_arn(self, arn):
        """The Job of a pipeline step: "local:training-job/NAME" (or processing-job)."""
        from ..jobs import Job

        match = _JOB_ARN.match(arn or "")
        if not match:
            raise SmRMagicError(f"{arn!r} is not a {self.backend.name} job (local:training-job/NAME or "
                                "local:processing-job/NAME)")
        return Job(self.backend, match.group(1), match.group(2))

    def delete_folder(self, name):
        shutil.rmtree(self.folder(name).path, ignore_errors=True)
