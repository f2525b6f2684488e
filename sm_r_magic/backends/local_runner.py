"""Runs one local or docker job to its end, detached from the kernel that started it.

`python -m sm_r_magic.backends.local_runner JOB_FOLDER` stages the inputs the request names into the job
folder (Downloading), runs the container command in it (Training/Processing), publishes model.tar.gz or
the processing outputs (Uploading) and records the outcome in state.json. Because it owns the job, a
kernel interrupt or restart does not stop or orphan the job: re-attach by name. SIGTERM stops the job
(forwarded to R, SIGKILL after the grace period), like StopTrainingJob. If the runner itself is killed
(kill -9, the OOM killer), the job's process gets SIGTERM from the kernel (parent-death signal); whoever next
reads the job's status finds the runner gone, stops what is left and records the job as Failed
(LocalBackend._state).
"""

import os
import select
import signal
import subprocess
import sys
import time

from . import jobfolder as jf
from .processes import parent_death_signal

def _end_with(runner_pid):
    """preexec_fn of the job's process: Linux sends it SIGTERM when the runner dies, even by SIGKILL
    (prctl PR_SET_PDEATHSIG survives the exec into R). R ends on SIGTERM; the docker client passes it on to
    the container (--sig-proxy), whose R ends too."""
    def preexec():
        parent_death_signal(signal.SIGTERM)
        if os.getppid() != runner_pid:  # the runner died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)
    return preexec


def _signal_name(code):
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _last_log_line(path, limit=4096):
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - limit))
            lines = [line.strip() for line in fh.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if "error" in line.lower()]  # not docker's "Run 'docker run --help'"
    return (errors or lines or [""])[-1][:800]


class Runner:
    def __init__(self, path):
        self.folder = jf.JobFolder(path)
        self.state = self.folder.state()
        self.request = self.folder.request()
        self.kind = self.state["kind"]
        self.launch = self.state["launch"]
        self.child = None
        self._pidfd = None
        self.stop_requested = None  # the reason, once asked to stop

    def request_stop(self, reason):
        if self.stop_requested is None:
            self.stop_requested = reason
        if self.child is not None and self.child.poll() is None:
            self._signal_child(signal.SIGTERM)

    def _signal_child(self, sig):
        stop_argv = self.launch.get("stop_argv")
        if stop_argv and sig == signal.SIGTERM:  # docker: `docker stop` delivers SIGTERM to the container's R
            subprocess.Popen(stop_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return
        kill_argv = self.launch.get("kill_argv")
        if kill_argv and sig == signal.SIGKILL:  # docker: killing the client would leave the container running
            try:
                subprocess.run(kill_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.child.pid, sig)
        except ProcessLookupError:
            pass

    def _on_sigterm(self, signum, frame):
        self.request_stop("Stopped by the user")

    def run(self):
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # The kernel starts us with SIGTERM blocked (folder_jobs.py): a stop sent before the handler above was
        # installed is pending, and is handled now instead of killing us before the job's end is recorded.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        self.folder.update(runner_pid=os.getpid())
        try:
            self._stage()
            if self.stop_requested:
                return self.folder.finish("Stopped", failure_reason=self.stop_requested)
            rc = self._execute()
            if self.stop_requested:
                return self.folder.finish("Stopped", exit_code=rc, failure_reason=self.stop_requested)
            if rc == 0:
                self.folder.transition("Uploading", "Uploading generated artifacts")
                self._publish()
                return self.folder.finish("Completed", exit_code=0)
            reason = jf.failure_message(self.folder, self.kind)
            if not reason:
                reason = self._exit_reason(rc)
            return self.folder.finish("Failed", exit_code=rc, failure_reason=reason)
        except Exception as exc:  # staging or publishing failed: say so as the job's failure
            with open(self.folder.log_file, "a") as log:
                log.write(f"[sm-r-magic] {type(exc).__name__}: {exc}\n")
            return self.folder.finish("Failed", failure_reason=f"{type(exc).__name__}: {exc}")

    def _exit_reason(self, rc):
        known = (self.launch.get("exit_reasons") or {}).get(str(rc))  # docker: statuses of `docker run` itself
        if known:
            last = _last_log_line(self.folder.log_file)
            return f"{known}: {last}" if last else known
        return f"R was killed by {_signal_name(rc)}" if rc < 0 else f"R exited with status {rc}"

    def _stage(self):
        self.folder.transition("Downloading", "Downloading input data")
        if self.kind == "training":
            jf.write_training_config(self.folder, self.request)
            jf.stage_training_inputs(self.folder, self.request)
        else:
            jf.write_processing_config(self.folder, self.request)
            jf.stage_processing_inputs(self.folder, self.request)

    def _execute(self):
        self.folder.transition("Training" if self.kind == "training" else "Processing",
                               "Running the R code")
        env = dict(os.environ)
        env.update(self.launch.get("env", {}))
        max_runtime = self.request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
        grace = float(self.launch.get("stop_timeout", 10))
        self.child = self._start_child(env)
        self.folder.update(child_pid=self.child.pid)
        if self.stop_requested:
            self._signal_child(signal.SIGTERM)
        started = time.monotonic()
        stop_sent = None
        while True:
            rc = self._wait_child(0.2)
            if rc is not None:
                return rc
            if max_runtime and time.monotonic() - started > max_runtime and self.stop_requested is None:
                self.request_stop(f"MaxRuntimeExceeded: the job ran longer than {max_runtime} s")
            if self.stop_requested and stop_sent is None:
                stop_sent = time.monotonic()
            if stop_sent is not None and time.monotonic() - stop_sent > grace:
                self._signal_child(signal.SIGKILL)
                stop_sent = float("inf")

    def _start_child(self, env):
        """The container's command, started in the job folder with this environment."""
        with open(self.folder.log_file, "ab", buffering=0) as log:
            return subprocess.Popen(self.launch["argv"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.folder.path, start_new_session=True,
                                    preexec_fn=_end_with(os.getpid()))

    def _wait_child(self, timeout):
        """The child's exit status, or None after `timeout` seconds. A pidfd wakes us the moment it ends (Popen's
        own wait with a timeout polls, up to 50 ms late)."""
        if self._pidfd is None:
            try:
                self._pidfd = os.pidfd_open(self.child.pid)
            except (AttributeError, OSError):  # Linux < 5.3
                self._pidfd = -1
        if self._pidfd >= 0:
            select.select([self._pidfd], [], [], timeout)
        try:
            return self.child.wait(timeout=0 if self._pidfd >= 0 else timeout)
        except subprocess.TimeoutExpired:
            return None

    def _publish(self):
        if self.kind == "training":
            jf.publish_training_outputs(self.folder, self.request)
        else:
            jf.publish_processing_outputs(self.folder, self.request)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    Runner(argv[0]).run()


if __name__ == "__main__":
    main()
