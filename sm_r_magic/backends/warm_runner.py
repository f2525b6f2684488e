"""A pre-started, single-use local job runner: R is already up, waiting for a job, when the job comes.

    python -m sm_r_magic.backends.warm_runner KIND RSCRIPT POOL_DIR TOKEN OWNER_PID

The kernel's pool (warm_pool.py) starts one per job kind. It starts R at once, as a cold runner would for a job
(`Rscript --no-init-file entrypoint.R train|process`, in its own session, ending with this runner), but with
SM_R_MAGIC_WARM set, so that R loads the container's library and then waits for its job on stdin
(container/warm.R). R's output goes to POOL_DIR/TOKEN.logs.txt, this runner's to POOL_DIR/TOKEN.runner.log;
R creates POOL_DIR/TOKEN.ready once it waits.

While idle it holds no job and dies with its owner: the parent-death signal (SIGTERM) and end-of-file on its
stdin (the owner's pipe) both end it and its R. It is handed a job as one line on stdin, {"folder": JOB FOLDER,
"env": the environment a cold runner would have}; it then clears the parent-death signal (from now on it
outlives the kernel, like a cold runner, in its own session), moves its two logs into the job folder (the same
filesystem: a rename, R keeps writing to the same file), stages the inputs and tells R to go with the
differences between R's environment and the one a cold start would have had, then does what a cold runner does
(local_runner.Runner). It runs that one job and exits.

Variables that only take effect at R's start-up (R_*, locale, LD_*, PATH, TMPDIR, thread counts, ...) cannot be
changed in a running R: when they differ, the job runs cold (warm_pool.py checks before handing a job over; this
runner checks again and starts R cold itself if they differ, or if its R has died).
"""

import json
import os
import select
import signal
import sys

from .. import warm_processes
from ..paths import CONTAINER_DIR
from . import jobfolder as jf
from .local_runner import Runner, _end_with
from .processes import parent_death_signal

ENTRYPOINT_R = os.path.join(CONTAINER_DIR, "entrypoint.R")
MODES = {"training": "train", "processing": "process"}

# What R reads only while starting: its own R_* settings and Renviron's names, the locale, the dynamic linker,
# where programs, temporary files and home are, BLAS/OpenMP thread counts, glibc's malloc; PYTHON* for the
# runner itself.
STARTUP_PREFIXES = ("R_", "_R_", "LC_", "LD_", "OMP_", "GOMP_", "KMP_", "OPENBLAS_", "GOTO_", "MKL_", "BLIS_",
                    "VECLIB_", "MALLOC_", "GLIBC_", "JAVA_", "PYTHON")
STARTUP_NAMES = frozenset({"LANG", "LANGUAGE", "PATH", "HOME", "TMPDIR", "TMP", "TEMP", "TZ", "EDITOR", "VISUAL",
                           "PAGER", "MAKE", "SED", "TAR", "LN_S", "TEXI2DVI"})


def startup_only(name):
    return name not in warm_processes.MARKS and (name in STARTUP_NAMES or name.startswith(STARTUP_PREFIXES))


def environment_changes(start_env, wanted_env):
    """(set, unset) that turn the environment R started with into the one a cold start would have had, or None
    when a variable only R's start-up reads differs (the job must start cold). PWD is what R's start-up script
    sets it to: the folder R starts in, so wanted_env names the job folder there."""
    to_set = {k: v for k, v in wanted_env.items() if start_env.get(k) != v}
    to_unset = sorted(k for k in start_env if k not in wanted_env)
    if any(startup_only(k) for k in list(to_set) + to_unset):
        return None
    try:
        json.dumps(to_set, ensure_ascii=False).encode("utf-8")  # R reads it as UTF-8 JSON
    except UnicodeEncodeError:
        return None
    return to_set, to_unset


class WarmJobRunner(Runner):
    """local_runner.Runner whose child is the R that is already waiting (when it is still alive and the job's
    environment can be given to it)."""

    def __init__(self, path, warm_r, r_start_env):
        super().__init__(path)
        self.warm_r = warm_r
        self.r_start_env = r_start_env
        self.warm_used = False

    def run(self):
        try:
            return super().run()
        finally:
            if not self.warm_used:
                self._end_warm_r()  # stopped or failed before R was needed: it ends without a word

    def _start_child(self, env):
        changes = environment_changes(self.r_start_env, dict(env, PWD=self.folder.path))
        if changes is not None and self.warm_r.poll() is None:
            go = {"set": changes[0], "unset": changes[1], "cwd": self.folder.path}
            try:
                self.warm_r.stdin.write(json.dumps(go, ensure_ascii=False).encode("utf-8") + b"\n")
                self.warm_r.stdin.close()  # user code reading stdin then sees end-of-file, as with /dev/null
                self.warm_used = True
                return self.warm_r
            except OSError:
                pass
        self._end_warm_r()
        return super()._start_child(env)

    def _end_warm_r(self):
        if self.warm_r.poll() is None:
            try:
                os.killpg(self.warm_r.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.warm_r.wait()


class IdleRunner:
    def __init__(self, kind, rscript, pool_dir, token, owner_pid):
        self.kind = kind
        self.rscript = rscript
        self.owner_pid = owner_pid
        self.r_log = os.path.join(pool_dir, f"{token}.logs.txt")
        self.runner_log = os.path.join(pool_dir, f"{token}.runner.log")
        self.pool_dir = pool_dir
        self.terminated = False
        self.ready_file = os.path.join(pool_dir, f"{token}.ready")
        self.job_runner = None
        self.r = None
        self.r_start_env = dict(os.environ, **{warm_processes.READY_VARIABLE: self.ready_file})  # R's, at its start

    def _on_sigterm(self, signum, frame):
        self.terminated = True
        if self.job_runner is not None:  # between the hand-off and the job runner's own handler
            self.job_runner.request_stop("Stopped by the user")

    def main(self):
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)  # a signal wakes the select() below
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # R's end wakes it too
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # started blocked: see warm_processes.start
        parent_death_signal(signal.SIGTERM)
        if os.getppid() != self.owner_pid:  # the owner died before the signal was armed
            return self._retire()
        self.r = self._start_r()
        handoff = self._wait_for_job(wake_r)
        if handoff is None:
            return self._retire()
        parent_death_signal(0)  # it has a job now: it outlives the kernel, like a cold runner
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(wake_r)
        os.close(wake_w)
        return self._run_job(handoff)

    def _start_r(self):
        import subprocess

        with open(self.r_log, "ab", buffering=0) as log:
            return subprocess.Popen([self.rscript, "--no-init-file", ENTRYPOINT_R, MODES[self.kind]],
                                    env=self.r_start_env, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=self.pool_dir, start_new_session=True, preexec_fn=_end_with(os.getpid()))

    def _wait_for_job(self, wake_r):
        """The hand-off ({"folder", "env"}), or None: the owner closed our stdin or died, SIGTERM came with no
        job, or R died while waiting. A job handed over just before a SIGTERM is still taken (it ends Stopped)."""
        received = b""
        end_of_file = False
        while b"\n" not in received:
            if end_of_file or self.r.poll() is not None:
                return None
            if self.terminated:
                received += _read_available(0)
                if b"\n" not in received:
                    return None
                break
            readable, _, _ = select.select([0, wake_r], [], [])
            if wake_r in readable:
                _read_available(wake_r)
            if 0 in readable:
                chunk = os.read(0, 1 << 16)
                end_of_file = not chunk
                received += chunk
        return json.loads(received.split(b"\n", 1)[0])

    def _run_job(self, handoff):
        folder = jf.JobFolder(handoff["folder"])
        _unlink(self.ready_file)
        os.environ.clear()
        os.environ.update(handoff["env"])  # what a cold runner started now would have (S3 staging reads it)
        try:
            os.replace(self.r_log, folder.log_file)
        except OSError:  # the pool folder was removed under it: R's output would go nowhere, so R starts cold
            self._end_r()
        try:
            os.replace(self.runner_log, os.path.join(folder.path, "runner.log"))
        except OSError:
            pass
        self.job_runner = WarmJobRunner(folder.path, self.r, self.r_start_env)
        if self.terminated:
            self.job_runner.request_stop("Stopped by the user")
        return self.job_runner.run()

    def _end_r(self):
        if self.r is not None and self.r.poll() is None:
            try:
                os.killpg(self.r.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.r.wait()

    def _retire(self):
        self._end_r()
        for path in (self.r_log, self.runner_log, self.ready_file):
            _unlink(path)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _read_available(fd):
    os.set_blocking(fd, False)
    data = b""
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(fd, True)
    return data


def main(argv=None):
    kind, rscript, pool_dir, token, owner_pid = sys.argv[1:] if argv is None else argv
    IdleRunner(kind, rscript, pool_dir, token, int(owner_pid)).main()


if __name__ == "__main__":
    main()
