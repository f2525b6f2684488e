"""The kernel's pool of pre-started local job runners (warm_runner.py): one ready per job kind, so that a local
job starts without R's start-up. Each runs one job and exits; the pool is refilled in the background, on the warm
processes' thread (warm_processes.py), once the job handed over has ended or a second has passed. One pool per
Python process, whatever the settings: a runner made for another local root or Rscript, or before this process's
environment changed where R cannot follow, is ended and replaced when the next job comes.

A job runs warm only when a cold start would run the same thing the same way: the container's own entrypoint
with no other arguments (no ContainerArguments), this Rscript, and no variable that only takes effect at R's
start-up differing between the runner's environment and the job's (a request whose Environment names R_*, LANG,
PATH, ... runs cold; the ready runner then waits for the next job). Otherwise FolderJobs starts a cold runner.
"""

import json
import os
import select
import subprocess
import sys
import threading
import uuid

from .. import warm_processes
from ..paths import ENTRYPOINT
from .folder_jobs import runner_environment
from .warm_runner import MODES, environment_changes

POOL_SUBDIR = "warm"  # under the local root: the same filesystem as the job folders (logs are renamed in)
START_TIMEOUT = 30.0  # seconds to wait for a runner whose start is still queued
REFILL_AFTER = 1.0    # seconds after a hand-off at most before the pool starts the next runner of that kind


def _encodable(env):
    try:
        json.dumps(dict(env), ensure_ascii=False).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _runner_fits(warm, key, folder, runner_env):
    """It was made for this root and Rscript, and this process's environment has not changed since where R cannot
    follow (a variable only R's start-up reads)."""
    return warm.key == key and environment_changes(warm.start_env, dict(runner_env, PWD=folder.path)) is not None


def _request_fits(kind, key, folder, launch, runner_env):
    """A cold start would run the container's plain entrypoint with this Rscript, and the request's Environment
    changes no variable that only R's start-up reads (nor holds what is not valid UTF-8)."""
    argv, env = launch.get("argv") or [], launch.get("env") or {}
    if argv != ["/bin/sh", ENTRYPOINT, MODES[kind]] or env.get("SM_R_MAGIC_RSCRIPT") != key[1]:
        return False
    if not _encodable(runner_env):
        return False
    return environment_changes(runner_env, dict(runner_env, **env)) is not None


class WarmRunner:
    """One runner of the pool: its start is queued on the warm thread; `files` are what it leaves in the pool
    folder (its logs until a job takes them, the file R creates once it waits)."""

    def __init__(self, kind, key):
        self.kind = kind
        self.key = key  # (local root, Rscript, Python, entrypoint)
        self.env = runner_environment()
        self.start_env = warm_processes.marked_environment(self.env, kind)
        token = uuid.uuid4().hex[:16]
        pool_dir = os.path.join(key[0], POOL_SUBDIR)
        self.argv = [sys.executable, "-m", "sm_r_magic.backends.warm_runner", kind, key[1], pool_dir, token,
                     str(os.getpid())]
        self.runner_log, self.ready_file = (os.path.join(pool_dir, f"{token}.{ext}") for ext in ("runner.log", "ready"))
        self.files = (self.runner_log, os.path.join(pool_dir, f"{token}.logs.txt"), self.ready_file)
        self.future = warm_processes.in_background(self._start)

    def _start(self):
        os.makedirs(os.path.dirname(self.runner_log), exist_ok=True)
        with open(self.runner_log, "ab") as log:
            return warm_processes.start(self.argv, self.kind, self.env, block_sigterm=True, stdin=subprocess.PIPE,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # a kernel interrupt must not reach it

    def process(self, timeout=START_TIMEOUT):
        try:
            return self.future.result(timeout)
        except Exception:
            return None

    def waiting(self):
        """Its R is up and waiting for a job."""
        proc = self.process(timeout=0) if self.future.done() else None
        return proc is not None and proc.poll() is None and os.path.exists(self.ready_file)

    def hand_off(self, folder, runner_env):
        """Give it the job: its pid is recorded in the job's state first (from then on the runner writes
        state.json). Returns the Popen, no longer the pool's, or None when it has died (start the job cold)."""
        proc = self.process()
        if proc is None:
            return None
        if proc.poll() is None:
            folder.update(runner_pid=proc.pid)
            handoff = json.dumps({"folder": folder.path, "env": runner_env}, ensure_ascii=False).encode("utf-8")
            try:
                proc.stdin.write(handoff + b"\n")
                proc.stdin.close()
                warm_processes.release(proc)
                return proc
            except OSError:  # it died just now
                pass
        self._end_now()
        return None

    def end(self):
        """End it in the background (it holds no job)."""
        warm_processes.in_background(self._end_now)

    def _end_now(self):
        proc = self.process()
        if proc is not None:
            warm_processes.end(proc)
        for path in self.files:
            try:
                os.unlink(path)
            except OSError:
                pass


class RunnerPool:
    def __init__(self):
        self._lock = threading.Lock()
        self._ready = {}  # kind -> WarmRunner

    @staticmethod
    def _key(root, rscript):
        return (os.path.abspath(root), rscript, sys.executable, ENTRYPOINT)

    def fill(self, kind, root, rscript, replace=True):
        """Have a runner of this kind for jobs under `root` run with `rscript` (started in the background;
        returns at once). replace=False: only if there is none of this kind (for another root or Rscript)."""
        key = self._key(root, rscript)
        if not _encodable(os.environ):  # a variable that is not valid UTF-8: every job would start cold
            return
        with self._lock:
            current = self._ready.get(kind)
            if current is not None and (current.key == key or not replace):
                return
            self._ready[kind] = WarmRunner(kind, key)
        if current is not None:
            current.end()

    def take(self, kind, folder, launch, runner_env, rscript, root):
        """A warm runner handed this job (a Popen, no longer the pool's), or None: start it cold. The ready one
        when it fits; when none is ready (or it was made for another root, Rscript or environment) a new one
        started now, which is no slower than a cold start (its R starts while the inputs are staged)."""
        key = self._key(root, rscript)
        if not _request_fits(kind, key, folder, launch, runner_env):
            self.fill(kind, root, rscript, replace=False)  # for the next job
            return None
        with self._lock:
            warm = self._ready.pop(kind, None)
        if warm is None or not _runner_fits(warm, key, folder, runner_env):
            stale, warm = warm, WarmRunner(kind, key)
            if stale is not None:
                stale.end()  # queued after the new one's start
        proc = warm.hand_off(folder, runner_env)
        if proc is None:
            self.fill(kind, root, rscript)
        else:
            self._fill_after(proc, kind, root, rscript)
        return proc

    def _fill_after(self, proc, kind, root, rscript):
        """Refill once the job just handed over has ended, or after REFILL_AFTER seconds: a runner starting R
        takes a CPU for ~0.3 s, which a short job should not have to share."""
        def wait_then_fill():
            try:
                pidfd = os.pidfd_open(proc.pid)
            except (AttributeError, OSError):  # Linux < 5.3, or it has ended already
                pidfd = None
            if pidfd is not None:
                select.select([pidfd], [], [], REFILL_AFTER)
                os.close(pidfd)
            if warm_processes.enabled():  # (the settings in force now: they may have been turned off since)
                try:
                    self.fill(kind, root, rscript, replace=False)  # a runner started since (another root) stays
                except RuntimeError:  # the interpreter is shutting down: no new runner
                    pass

        threading.Thread(target=wait_then_fill, name="sm-r-magic-refill", daemon=True).start()

    def ready(self, kind):
        """The runner of this kind whose R is waiting for a job, or None."""
        with self._lock:
            warm = self._ready.get(kind)
        return warm if warm is not None and warm.waiting() else None

    def clear(self):
        """End the ready runners (they hold no job)."""
        with self._lock:
            ready, self._ready = list(self._ready.values()), {}
        for warm in ready:
            warm.end()


POOL = RunnerPool()
