"""The serving front's event loop (see serve_front.py): HTTP requests in (serve_http.py), R processes' connections
(the parent's control connection and one per worker), routing, queueing, timeouts and worker replacement.
Imported by serve_front.py once R is starting, so these imports overlap R's start-up."""

import asyncio
import collections
import hmac
import json
import os
import signal
import socket
import struct
import sys
import time

from serve_http import HttpConnection

SHUTDOWN_GRACE = 2.0


def log(message):
    sys.stderr.write(f"[sm-r-magic] {message}\n")
    sys.stderr.flush()


def _alive(pid):
    """Running (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _signal(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class Worker(asyncio.Protocol):
    """One R process's connection to the front: the parent's control connection or a worker's, which answers one
    request at a time (frames: see serve.R's header)."""

    def __init__(self, front):
        self.front = front
        self.transport = None
        self.buffer = bytearray()
        self.pid = None
        self.role = None
        self.request = None  # the request it is answering
        self.dead = False

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.buffer += data
        while len(self.buffer) >= 4:
            (size,) = struct.unpack_from(">I", self.buffer)
            if len(self.buffer) < 4 + size:
                return
            frame = bytes(self.buffer[4:4 + size])
            del self.buffer[:4 + size]
            if self.role is None:
                self._hello(frame)
            else:
                self.front.worker_answered(self, frame)

    def _hello(self, frame):
        try:
            hello = json.loads(frame)
            ok = hmac.compare_digest(str(hello.get("token", "")), self.front.token)
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            self.transport.close()
            return
        self.pid = int(hello["pid"])
        self.role = hello["role"]
        self.front.connected(self, hello)

    def send(self, head, body):
        self.transport.write(struct.pack(">II", len(head), len(body)) + head + body)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        if self.role is not None and not self.dead:
            self.dead = True
            self.front.worker_lost(self)


class Front:
    """Routes requests to R workers; owns the R process and its workers."""

    def __init__(self, settings, loop, r_process, token, write_failure):
        self.settings = settings
        self.loop = loop
        self.r = r_process
        self.token = token
        self.write_failure = write_failure
        self.control = None           # the R parent's connection
        self.hello = None             # its hello: mode, program, example payloads
        self.workers = {}             # pid -> Worker (connected, alive)
        self.idle = collections.deque()
        self.queue = collections.deque()
        self.deadlines = {}           # request (queued or running) -> when it times out
        self.sweeping = False
        self.sweep_interval = min(0.25, settings.request_timeout / 4)
        self.forks_asked = 0
        self.ever_ready = False
        self.stopping = False
        self.exit_status = 0
        self.max_body = int(settings.max_payload_mb * 1024 * 1024)

    # -- R processes -------------------------------------------------------------------------------------
    def connected(self, worker, hello):
        if worker.role == "parent":
            self.control = worker
            self.hello = hello
            self._ask_forks(self.settings.workers)
            return
        self.forks_asked = max(0, self.forks_asked - 1)
        self.workers[worker.pid] = worker
        if not self.ever_ready:
            self.ever_ready = True
            log(f"serving {hello_program(self.hello)} on {self.settings.host}:{self.settings.port} with "
                f"{self.settings.workers} worker{'s' if self.settings.workers != 1 else ''}")
        self._give_work(worker)

    def _ask_forks(self, n):
        if n > 0 and self.control is not None and not self.stopping:
            self.forks_asked += n
            self.control.transport.write(b"f" * n)

    def _replace(self):
        missing = self.settings.workers - len(self.workers) - self.forks_asked
        self._ask_forks(missing)

    def worker_lost(self, worker):
        if worker.role == "parent":
            self.control = None
            return  # watch_r() notices the exit
        self.workers.pop(worker.pid, None)
        try:
            self.idle.remove(worker)
        except ValueError:
            pass
        request, worker.request = worker.request, None
        if request is not None and not self.stopping:
            log(f"the R worker (pid {worker.pid}) ended while answering {request.method} {request.path}")
            self._finish(request)
            request.respond(500, f"the R worker (pid {worker.pid}) answering this request ended: see the "
                                 "endpoint's logs\n")
        self._replace()

    def watch_r(self):
        """Every 0.1 s: has the R parent exited?"""
        if self.stopping:
            return
        status = self.r.poll()
        if status is None:
            self.loop.call_later(0.1, self.watch_r)
            return
        if self.hello is None and status > 0:  # R failed while loading: it wrote the failure file
            return self.stop(status)
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        reason = (f"Error: R {how} while loading the model" if self.hello is None else
                  f"Error: the R process that forks the workers (pid {self.r.pid}) {how}: no worker can be replaced")
        self.write_failure(reason)
        log(reason)
        self.stop(1)

    # -- requests ----------------------------------------------------------------------------------------
    @property
    def ready(self):
        return self.hello is not None and bool(self.workers) and not self.stopping

    def too_large_message(self, size):
        return (f"request body of {size} bytes exceeds the {self.settings.max_payload_mb:g} MB limit "
                "(SM_R_MAGIC_MAX_PAYLOAD_MB)\n")

    def handle(self, request):
        path, method = request.path, request.method
        if path == "/ping":
            if method not in ("GET", "HEAD"):
                return request.respond(405, "use GET /ping\n")
            if self.ready:
                return request.respond(200, b"")
            why = "loading the model" if self.hello is None else "no R worker is running (starting one)"
            return request.respond(503, why + "\n")
        if path == "/execution-parameters" and method == "GET":
            return request.respond(200, json.dumps({
                "MaxConcurrentTransforms": self.settings.workers, "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": _whole(self.settings.max_payload_mb)}), "application/json")
        if self._mode() == "handler":
            if path == "/prototype" and method in ("GET", "HEAD"):
                return self._prototype(request)
            if path != "/invocations":
                return request.respond(404, f"no route for {method} {path}: use GET /ping or POST /invocations\n")
            if method != "POST":
                return request.respond(405, "use POST /invocations\n")
        elif self.hello is None:
            return request.respond(503, "loading the model\n")
        self._enqueue(request)

    def _mode(self):
        return (self.hello or {}).get("mode")

    def _prototype(self, request):
        examples = (self.hello or {}).get("example") or {}
        accept = _media_type(request.headers.get("accept", "").split(",")[0]) or "application/json"
        if not examples:
            return request.respond(404, "no example input is known for this model\n")
        if accept not in examples:
            accept = "application/json" if accept == "*/*" else None
        if accept is None:
            return request.respond(406, f"example input as {', '.join(sorted(examples))}\n")
        return request.respond(200, examples[accept], accept)

    def _head(self, request):
        content_type = _media_type(request.headers.get("content-type", ""))
        accept = _media_type(request.headers.get("accept", "").split(",")[0])
        if not accept or accept == "*/*":
            accept = content_type
        lines = [request.method, request.path, request.query, content_type, accept]
        if self._mode() == "plumber":
            lines += [f"{name}: {value}" for name, value in request.headers.items()]
        return "\n".join(lines).encode("utf-8", errors="replace")

    def _enqueue(self, request):
        request.state = {}
        self.deadlines[request] = request.started + self.settings.request_timeout
        if not self.sweeping:  # one timer for all requests, not one per request
            self.sweeping = True
            self.loop.call_later(self.sweep_interval, self._sweep)
        if self.idle:
            self._start(self.idle.pop(), request)  # the most recent: its caches are warm
        else:
            self.queue.append(request)

    def _start(self, worker, request):
        worker.request = request
        request.state["worker"] = worker
        request.state["pid"] = worker.pid
        worker.send(self._head(request), request.body)

    def _give_work(self, worker):
        while self.queue:
            request = self.queue.popleft()
            if not request.gone and not request.answered:
                return self._start(worker, request)
        self.idle.append(worker)

    def worker_answered(self, worker, frame):
        request, worker.request = worker.request, None
        if request is not None:
            self._finish(request)
            status, head_size = struct.unpack_from(">iI", frame)
            head = frame[8:8 + head_size].decode("utf-8", errors="replace").split("\n")
            request.respond(status, frame[8 + head_size:], head[0] or "application/octet-stream", head[1:])
        if not worker.dead:
            self._give_work(worker)

    def _finish(self, request):
        self.deadlines.pop(request, None)
        request.state.pop("worker", None)

    def _sweep(self):
        now = self.loop.time()
        for request in [r for r, deadline in self.deadlines.items() if deadline <= now]:
            self._timed_out(request)
        self.sweeping = bool(self.deadlines) and not self.stopping
        if self.sweeping:
            self.loop.call_later(self.sweep_interval, self._sweep)

    def abandon(self, request):
        """The client left: drop its queued request; a running one finishes and its answer is dropped."""
        if request.state is None:
            return
        if request.state.get("worker") is None:
            self._finish(request)
            try:
                self.queue.remove(request)
            except ValueError:
                pass
        if self.settings.access_log:
            log(f"{request.method} {request.path}: the client closed the connection before the answer")

    def _timed_out(self, request):
        worker = request.state.get("worker")
        self._finish(request)
        limit = f"{self.settings.request_timeout:g} s (SM_R_MAGIC_REQUEST_TIMEOUT)"
        if worker is None:
            try:
                self.queue.remove(request)
            except ValueError:
                pass
            return request.respond(504, f"no R worker was free within {limit}\n")
        log(f"{request.method} {request.path} took longer than {limit}: stopping its R worker (pid {worker.pid})")
        worker.request = None
        worker.dead = True
        self.workers.pop(worker.pid, None)
        _signal([worker.pid], signal.SIGKILL)
        worker.transport.close()
        request.respond(504, f"the request took longer than {limit}: its R worker was stopped and replaced\n")
        self._replace()

    def log_request(self, request, status):
        if request.path == "/ping" and status != 405:
            return
        if status >= 400 or self.settings.access_log:
            took = 1000 * (self.loop.time() - request.started)
            pid = (request.state or {}).get("pid")
            log(f"{request.method} {request.path} {status} {took:.1f} ms" + (f" (R worker pid {pid})" if pid else ""))

    # -- shutdown ----------------------------------------------------------------------------------------
    def stop(self, status=0):
        if self.stopping:
            return
        self.stopping = True
        self.exit_status = status
        self.loop.stop()

    def end_r(self):
        """SIGTERM to R and its workers, SIGKILL to what is left after the grace period."""
        pids = [self.r.pid, *self.workers]
        _signal(pids, signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while time.monotonic() < deadline:
            self.r.poll()
            if not any(_alive(pid) for pid in pids):
                break
            time.sleep(0.02)
        _signal([pid for pid in pids if _alive(pid)], signal.SIGKILL)
        self.r.wait(timeout=5)


def hello_program(hello):
    if (hello or {}).get("mode") == "plumber":
        return "the plumber router"
    return (hello or {}).get("program", "the model")


def _whole(number):
    return int(number) if float(number).is_integer() else number


def _media_type(value):
    return value.split(";")[0].strip().lower()


def run(settings, public, internal, r_process, token, write_failure):
    """Serve until a signal or the R parent's end; returns the exit status."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    front = Front(settings, loop, r_process, token, write_failure)
    servers = [
        loop.run_until_complete(loop.create_server(lambda: HttpConnection(front, front.max_body), sock=public)),
        loop.run_until_complete(loop.create_server(lambda: Worker(front), sock=internal)),
    ]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, front.stop, 0)
    loop.call_soon(front.watch_r)
    try:
        loop.run_forever()
    finally:
        for server in servers:
            server.close()
        if front.hello is not None or r_process.poll() is None:
            log("shutting down")
        front.end_r()
    return front.exit_status


