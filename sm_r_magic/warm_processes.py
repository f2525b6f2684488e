"""The warm processes this Python process owns: R's parser kept warm for the syntax check (rparser.py) and the
pre-started local job runners (backends/warm_pool.py). They are started in the background, by one long-lived
thread, and ended by PID when this process exits (atexit) or when their owner asks.

One thread starts the runners because Linux sends the parent-death signal (PR_SET_PDEATHSIG, which an idle warm
runner arms) when the *thread* that forked the child ends, not the process: a short-lived thread would take its
runners with it. The parser needs no such signal and starts in the thread that first asks for it (no thread is
made for it: a process's children that do arm the signal get it once per thread of the process as the threads
die one by one). When this process is killed outright (SIGKILL), nothing here runs: each warm process then sees
its stdin pipe from us reach end-of-file and ends itself (and an idle runner also gets the parent-death signal).

Every warm process carries SM_R_MAGIC_WARM (its role: parser, training or processing) and
SM_R_MAGIC_WARM_OWNER (our pid) in its environment, so tools and tests can find what was left behind.
"""

import atexit
import os
import signal
import threading
import time

ROLE_VARIABLE = "SM_R_MAGIC_WARM"
OWNER_VARIABLE = "SM_R_MAGIC_WARM_OWNER"
READY_VARIABLE = "SM_R_MAGIC_WARM_READY"  # a warm runner's R: the file it creates once it waits
MARKS = frozenset({ROLE_VARIABLE, OWNER_VARIABLE, READY_VARIABLE})  # never passed on to a job

_lock = threading.Lock()
_executor = None
_owned = {}  # pid -> (Popen, role): started here, not yet handed a job
_at_exit_registered = False
_closed = False  # set by shutdown(): no warm process starts after it


def enabled(config=None):
    """RMagic.warm_processes (environment: SM_R_MAGIC_WARM_PROCESSES)."""
    if config is None:
        from .config import current

        config = current()
    return bool(getattr(config, "warm_processes", True))


def marked_environment(env, role):
    env = dict(env)
    env[ROLE_VARIABLE] = role
    env[OWNER_VARIABLE] = str(os.getpid())
    return env


def in_background(func, *args, **kwargs):
    """Run func on the warm processes' own thread (it lives as long as this process) -> a Future."""
    global _executor
    with _lock:
        if _executor is None:
            from concurrent.futures import ThreadPoolExecutor

            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sm-r-magic-warm")
        return _executor.submit(func, *args, **kwargs)


def _end_at_exit():
    global _at_exit_registered
    with _lock:
        if not _at_exit_registered:
            atexit.register(shutdown)
            _at_exit_registered = True


def start(argv, role, env, block_sigterm=False, **popen_kwargs):
    """Popen(argv) as a warm process of this role. One that arms the parent-death signal must be started on the
    warm thread (in_background). With block_sigterm the child starts with SIGTERM blocked (the mask survives exec)
    and unblocks it once its handler is installed, so that a SIGTERM sent at any moment is handled, never lost or
    fatal."""
    import subprocess

    _end_at_exit()

    env = marked_environment(env, role)
    with _lock:  # started and registered at once: shutdown() either ends it or it is never started
        if _closed:
            raise RuntimeError("warm processes have been shut down (this process is exiting)")
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}) if block_sigterm else None
        try:
            proc = subprocess.Popen(argv, env=env, **popen_kwargs)
        finally:
            if old_mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        _owned[proc.pid] = (proc, role)
    return proc


def release(proc):
    """proc was handed a job: it is no longer ours to end."""
    with _lock:
        _owned.pop(proc.pid, None)


def _ask_to_end(proc):
    """Close its stdin (a warm process ends itself on end-of-file) and send SIGTERM."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:
        pass
    if proc.poll() is None:
        try:
            proc.terminate()
        except ProcessLookupError:
            pass


def _reap(proc, timeout):
    """Wait for it to end; SIGKILL when it has not after `timeout` seconds."""
    try:
        proc.wait(timeout=max(0.0, timeout))
    except Exception:  # subprocess.TimeoutExpired
        proc.kill()
        proc.wait(timeout=10)


def end(proc, grace=2.0):
    """End one warm process: close its stdin, SIGTERM, SIGKILL after `grace`."""
    release(proc)
    _ask_to_end(proc)
    _reap(proc, grace)


def owned(role=None):
    with _lock:
        return [proc for proc, r in _owned.values() if role is None or r == role]


def shutdown():
    """End every warm process this process owns, and start none after (atexit; the tests' session end calls it
    too). Idempotent."""
    global _closed
    with _lock:
        _closed = True
    procs = owned()
    for proc in procs:
        _ask_to_end(proc)
    deadline = time.monotonic() + 5
    for proc in procs:
        _reap(proc, deadline - time.monotonic())
        release(proc)
