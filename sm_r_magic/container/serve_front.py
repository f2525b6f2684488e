"""Serve mode of the shared R container: the HTTP front (`entrypoint.sh serve` execs this file; Python stdlib only,
as the image has only Debian's python3) in front of a pool of persistent R workers (serve.R), the way SageMaker's
framework containers put nginx/gunicorn in front of their workers.

  front (this process) --starts--> R (`entrypoint.R serve`): loads the code and the model once, warms up, and
                                   forks one worker per byte the front sends it on its control connection
                                   `--> N R workers, each on one connection to the front, one request at a time

The front listens on SM_R_MAGIC_BIND_HOST (default 0.0.0.0, as SageMaker needs; the local backend passes
127.0.0.1) : SAGEMAKER_BIND_TO_PORT (default 8080) at once, and
  * answers GET /ping itself, within 2 s even while every worker is busy: 200 once the model is loaded and a
    worker is connected, 503 before that and whenever no worker is left (never 200 while invocations cannot
    succeed);
  * answers GET /execution-parameters and (handler mode) GET /prototype, a row of the model's own inputs;
  * refuses bodies over SM_R_MAGIC_MAX_PAYLOAD_MB (default 6) with 413 before R sees them;
  * sends every other request to a free worker, queueing while all are busy; a request not answered within
    SM_R_MAGIC_REQUEST_TIMEOUT seconds (default 60, SageMaker's limit) gets 504 and its worker is killed;
  * replaces a worker that ends (killed, crashed, quit() in user code) with a new fork of the loaded R; a request
    it was answering gets 500;
  * a client that disconnects or times out loses only its own answer: its worker finishes and takes the next;
  * if the R process that forks the workers ends, no worker can be replaced: the front stops with status 1
    (before the model is loaded: with R's status; R wrote the failure file).
Workers: SM_R_MAGIC_WORKERS (default: the number of CPUs). SM_R_MAGIC_ACCESS_LOG=1 logs every request (by default
only those answered with status >= 400). SIGTERM, SIGINT or SIGHUP: stop listening, end R and its workers
(SIGTERM, SIGKILL after 2 s) and exit 0. SM_R_MAGIC_PLUMBER_NATIVE=1: no front, R serves a plumber router with
plumber/httpuv itself (serve.R).

R <-> front protocol: see serve.R's header. Shared state for R goes to a private folder the front makes and
removes (SM_R_MAGIC_SERVE_DIR; R's TMPDIR is inside it), never to a folder a worker could delete for the others.

This file only reads the settings, opens the sockets and starts R, with nothing but os, socket and sys imported:
the event loop (serve_app.py, serve_http.py) and its imports load while R starts.
"""

import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write_failure(text):
    """The failure file: SageMaker and the local backends show its first 1024 characters as the reason."""
    failure = os.path.join(os.environ.get("SM_R_MAGIC_ROOT", "/opt/ml"), "output", "failure")
    try:
        os.makedirs(os.path.dirname(failure), exist_ok=True)
        with open(failure, "w") as fh:
            fh.write(text + "\n")
    except OSError:
        pass


def fail(text, status):
    """Before serving: write the failure file, say why and exit."""
    write_failure(text)
    sys.stderr.write(text + "\n")
    sys.exit(status)


def _number(name, default, minimum, integer=False):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or value != value or value < minimum:
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"{name}='{raw}' is not {kind} >= {minimum:g}")
    return value


class Settings:
    def __init__(self):
        self.port = _number("SAGEMAKER_BIND_TO_PORT", 8080, 0, integer=True)
        self.host = os.environ.get("SM_R_MAGIC_BIND_HOST", "").strip() or "0.0.0.0"
        self.workers = _number("SM_R_MAGIC_WORKERS", 0, 0, integer=True) or max(1, len(os.sched_getaffinity(0)))
        self.max_payload_mb = _number("SM_R_MAGIC_MAX_PAYLOAD_MB", 6.0, 0)
        self.request_timeout = _number("SM_R_MAGIC_REQUEST_TIMEOUT", 60.0, 0.001)
        self.access_log = os.environ.get("SM_R_MAGIC_ACCESS_LOG", "") == "1"


def _listen(host, port):
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class RProcess:
    """R (`entrypoint.R serve`), started with posix_spawn: no subprocess import before R runs."""

    def __init__(self, env):
        import signal

        rscript = os.environ.get("SM_R_MAGIC_RSCRIPT", "Rscript")
        argv = [rscript, "--no-init-file", os.path.join(HERE, "entrypoint.R"), "serve"]
        try:  # as subprocess does: R gets default SIGPIPE/SIGXFSZ handling, not Python's SIG_IGN
            self.pid = os.posix_spawnp(rscript, argv, env, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
                                       file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)])
        except OSError as exc:
            fail(f"Error: cannot start R ({rscript}): {exc}", 2)
        self.returncode = None

    def poll(self):
        """The exit status (negative: killed by that signal) once R has ended, else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout):
        import time

        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.returncode


def _private_folder():
    base = os.environ.get("TMPDIR") or "/tmp"
    path = os.path.join(base, "sm-r-magic-serve-" + os.urandom(6).hex())
    os.mkdir(path, 0o700)
    return path


def main():
    if os.environ.get("SM_R_MAGIC_PLUMBER_NATIVE", "") == "1":
        rscript = os.environ.get("SM_R_MAGIC_RSCRIPT", "Rscript")
        os.execvp(rscript, [rscript, "--no-init-file", os.path.join(HERE, "entrypoint.R"), "serve"])
    try:
        settings = Settings()
    except ValueError as exc:
        fail(f"Error in the serving settings: {exc}", 2)
    try:
        public = _listen(settings.host, settings.port)
    except OSError as exc:
        fail(f"Error: could not serve on {settings.host}:{settings.port}: {exc.strerror or exc}", 1)
    internal = _listen("127.0.0.1", 0)
    token = os.urandom(16).hex()
    try:
        serve_dir = _private_folder()
    except OSError as exc:
        fail(f"Error: cannot make a private temporary folder: {exc}", 2)
    r_process = RProcess(dict(os.environ, SM_R_MAGIC_FRONT_PORT=str(internal.getsockname()[1]),
                              SM_R_MAGIC_FRONT_TOKEN=token, SM_R_MAGIC_SERVE_DIR=serve_dir, TMPDIR=serve_dir))
    try:
        import serve_app

        status = serve_app.run(settings, public, internal, r_process, token, write_failure)
    finally:
        import shutil

        shutil.rmtree(serve_dir, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
