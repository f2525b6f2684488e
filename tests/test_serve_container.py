"""The container's `serve` mode, end to end: the real front (`entrypoint.sh serve`: Python) and real R workers,
real HTTP on 127.0.0.1.

Each server runs with SM_R_MAGIC_ROOT pointing to a temporary folder laid out like /opt/ml and is stopped
by PID (SIGTERM, then SIGKILL of it and of any R process it started) when its test ends.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from .support.waiting import wait_until

ENTRYPOINT = Path(__file__).resolve().parents[1] / "sm_r_magic" / "container" / "entrypoint.sh"
RSCRIPT = shutil.which("Rscript")

pytestmark = pytest.mark.skipif(RSCRIPT is None, reason="Rscript is not installed")

NEWDATA = [(2.5, 120.0), (3.1, 200.0), (1.8, 95.0), (4.0, 150.0)]
CSV_BODY = "wt,hp\n" + "".join(f"{wt},{hp}\n" for wt, hp in NEWDATA)
JSON_RECORDS = json.dumps([{"wt": wt, "hp": hp} for wt, hp in NEWDATA])
JSON_COLUMNS = json.dumps({"wt": [wt for wt, _ in NEWDATA], "hp": [hp for _, hp in NEWDATA]})


def _r_available() -> bool:
    if RSCRIPT is None or shutil.which("python3") is None:
        return False
    probe = subprocess.run([RSCRIPT, "-e", "cat(requireNamespace('jsonlite', quietly = TRUE))"],
                           capture_output=True, text=True, timeout=60)
    return probe.stdout.strip() == "TRUE"


@pytest.fixture(scope="module")
def lm_model(tmp_path_factory):
    """model.rds of lm(mpg ~ wt + hp, mtcars) and R's own predictions for NEWDATA (17 significant digits)."""
    if not _r_available():
        pytest.skip("R with the jsonlite package (or python3) is not available")
    folder = tmp_path_factory.mktemp("lm")
    wt = ", ".join(str(w) for w, _ in NEWDATA)
    hp = ", ".join(str(h) for _, h in NEWDATA)
    script = (f"m <- lm(mpg ~ wt + hp, data = mtcars); saveRDS(m, '{folder}/model.rds'); "
              f"cat(sprintf('%.17g', predict(m, newdata = data.frame(wt = c({wt}), hp = c({hp})))), sep = '\\n')")
    out = subprocess.run([RSCRIPT, "-e", script], capture_output=True, text=True, check=True, timeout=60)
    expected = [float(line) for line in out.stdout.split()]
    assert len(expected) == len(NEWDATA)
    return folder / "model.rds", expected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process_table() -> dict[int, tuple[str, int]]:
    """pid -> (state, parent pid) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry)] = (fields[0], int(fields[1]))
    return table


def child_pids(pid: int) -> list[int]:
    """Live (non-zombie) children of pid, from /proc."""
    return [child for child, (state, parent) in _process_table().items() if parent == pid and state != "Z"]


def descendants(pid: int) -> list[int]:
    """Live (non-zombie) children, grandchildren, ... of pid: the front's R process and its workers."""
    table = _process_table()
    found, frontier = [], [pid]
    while frontier:
        parent_pid = frontier.pop()
        for child, (state, parent) in table.items():
            if parent == parent_pid and state != "Z":
                found.append(child)
                frontier.append(child)
    return found


def r_workers(server) -> list[int]:
    """The R workers: the children of the front's R process."""
    parents = child_pids(server.proc.pid)
    return [pid for parent in parents for pid in child_pids(parent)]


def zombie_children(pid: int) -> list[int]:
    return [child for child, (state, parent) in _process_table().items() if parent == pid and state == "Z"]


def alive(pid: int) -> bool:
    try:
        state = Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Server:
    """`entrypoint.sh serve` under a root folder; start() waits for /ping, stop() ends it by PID."""

    def __init__(self, root: Path, env: dict[str, str] | None = None):
        self.root = root
        self.port = free_port()
        self.env = {**os.environ, "SM_R_MAGIC_ROOT": str(root), "SAGEMAKER_BIND_TO_PORT": str(self.port),
                    "SM_R_MAGIC_BIND_HOST": "127.0.0.1", **(env or {})}
        for name in ("SAGEMAKER_SUBMIT_DIRECTORY", "SAGEMAKER_PROGRAM", "SM_R_MAGIC_MODEL_DATA"):
            if name not in (env or {}):
                self.env.pop(name, None)
        self.proc: subprocess.Popen | None = None
        self.log = root / "serve.log"
        self.seen_children: set[int] = set()

    def start(self, wait: bool = True, timeout: float = 30) -> "Server":
        self.proc = subprocess.Popen([str(ENTRYPOINT), "serve"], env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
                try:
                    status, _, _ = self.request("GET", "/ping", timeout=2)
                    if status == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            raise AssertionError(f"server did not answer /ping within {timeout} s:\n{self.output()}")
        return self

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None, timeout=30):
        own = conn is None
        conn = conn or self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            if self.proc is not None:
                self.seen_children.update(descendants(self.proc.pid))
            return response.status, data, dict((k.lower(), v) for k, v in response.getheaders())
        finally:
            if own:
                conn.close()

    def invoke(self, body, content_type, accept=None, conn=None):
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        return self.request("POST", "/invocations", body=body, headers=headers, conn=conn)

    def stop(self) -> None:
        if self.proc is None:
            return
        pid = self.proc.pid
        leftovers = set(descendants(pid)) | self.seen_children
        if self.proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for child in leftovers:
            if alive(child):
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def make_root(tmp_path: Path, model_rds: Path | None = None, code: dict[str, str] | None = None) -> Path:
    root = tmp_path / "opt_ml"
    (root / "model").mkdir(parents=True)
    if model_rds is not None:
        shutil.copy(model_rds, root / "model" / "model.rds")
    if code:
        write_files(root / "model" / "code", code)
    return root


def write_files(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def floats_csv(data: bytes) -> list[float]:
    return [float(line) for line in data.decode().split()]


def assert_close(actual, expected, tol=1e-9):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert abs(a - e) <= tol * max(1.0, abs(e)), (actual, expected)


HANDLER = 'model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))\n'


@pytest.fixture(scope="module")
def default_server(lm_model, tmp_path_factory):
    """inference.R with only model_fn: the default input/predict/output functions."""
    root = make_root(tmp_path_factory.mktemp("default"), lm_model[0], {"inference.R": HANDLER})
    server = Server(root)
    try:
        yield server.start()
    finally:
        server.stop()


def test_default_handlers_match_r_predict(default_server, lm_model):
    expected = lm_model[1]
    conn = default_server.connection()
    try:
        status, body, headers = default_server.invoke(CSV_BODY, "text/csv", conn=conn)
        assert status == 200 and headers["content-type"] == "text/csv"
        assert_close(floats_csv(body), expected)
        # the same kept-alive connection answers JSON (records and columns) and honours Accept
        status, body, headers = default_server.invoke(JSON_RECORDS, "application/json; charset=utf-8", conn=conn)
        assert status == 200 and headers["content-type"] == "application/json"
        assert_close(json.loads(body), expected)
        status, body, headers = default_server.invoke(JSON_COLUMNS, "application/json", accept="text/csv", conn=conn)
        assert status == 200 and headers["content-type"] == "text/csv"
        assert_close(floats_csv(body), expected)
        status, body, _ = default_server.invoke(CSV_BODY, "text/csv", accept="application/json", conn=conn)
        assert status == 200
        assert_close(json.loads(body), expected)
        status, body, _ = default_server.invoke(CSV_BODY, "text/csv", accept="*/*", conn=conn)
        assert status == 200
        assert_close(floats_csv(body), expected)
    finally:
        conn.close()


def test_ping_routes_and_errors_keep_the_server_up(default_server):
    status, body, _ = default_server.request("GET", "/ping")
    assert (status, body) == (200, b"")
    assert default_server.request("GET", "/nope")[0] == 404
    assert default_server.request("GET", "/invocations")[0] == 405
    status, body, _ = default_server.request("GET", "/execution-parameters")
    assert status == 200 and json.loads(body)["MaxPayloadInMB"] == 6
    conn = default_server.connection()
    try:
        status, body, _ = default_server.invoke("not json", "application/json", conn=conn)
        assert status == 400 and body.strip()          # jsonlite's parse error, from input_fn
        status, body, _ = default_server.invoke("<a/>", "application/xml", conn=conn)
        assert status == 415 and b"application/xml" in body
        status, body, _ = default_server.invoke("a,b\n1,2\n", "text/csv", conn=conn)
        assert status == 500 and b"wt" in body        # predict(): object 'wt' not found
        status, _, _ = default_server.invoke(CSV_BODY, "text/csv", accept="image/png", conn=conn)
        assert status == 406
        status, _, _ = default_server.invoke(CSV_BODY, "text/csv", conn=conn)
        assert status == 200                            # the same connection still works
    finally:
        conn.close()
    assert default_server.request("GET", "/ping")[0] == 200
    assert default_server.proc.poll() is None


def test_payload_over_limit_is_413(default_server):
    conn = default_server.connection()
    try:
        status, body, _ = default_server.invoke(b"x" * (6 * 1024 * 1024 + 1), "text/csv", conn=conn)
        assert status == 413 and b"6 MB" in body
        status, _, _ = default_server.invoke(CSV_BODY, "text/csv", conn=conn)
        assert status == 200
    finally:
        conn.close()


def test_connections_start_no_process(default_server):
    """One R process that forks the workers plus one per worker (2 here: one per CPU at most), whatever the
    clients do: new connections, kept-alive ones, closed ones. No zombie accumulates."""
    front = default_server.proc.pid
    before = sorted(descendants(front))
    for _ in range(10):
        assert default_server.request("GET", "/ping")[0] == 200
        assert default_server.invoke(CSV_BODY, "text/csv")[0] == 200
    conns = [default_server.connection() for _ in range(6)]
    try:
        for conn in conns:
            assert default_server.invoke(CSV_BODY, "text/csv", conn=conn)[0] == 200
        assert sorted(descendants(front)) == before
    finally:
        for conn in conns:
            conn.close()
    assert sorted(descendants(front)) == before
    assert len(r_workers(default_server)) == len(before) - 1
    assert not zombie_children(front) and not any(zombie_children(pid) for pid in before)


CUSTOM = r'''
model_fn <- function(model_dir) list(fit = readRDS(file.path(model_dir, "model.rds")), scale = 2)
input_fn <- function(body, content_type) {
  if (content_type == "application/octet-stream") return(list(nbytes = length(body), raw = is.raw(body)))
  if (content_type != "text/plain") sm_http_error(paste("only text/plain, not", content_type), 415L)
  if (body == "boom") stop("input_fn refuses boom")
  values <- as.numeric(strsplit(trimws(body), ";")[[1]])
  data.frame(wt = values[1], hp = values[2], sleep = if (length(values) > 2) values[3] else 0)
}
predict_fn <- function(data, model) {
  if (!is.data.frame(data)) return(data)
  if (data$sleep > 0) {
    if (nzchar(Sys.getenv("BUSY_MARK"))) cat(Sys.getpid(), "\n", file = Sys.getenv("BUSY_MARK"), append = TRUE)
    Sys.sleep(data$sleep)
  }
  model$scale * predict(model$fit, newdata = data)
}
output_fn <- function(prediction, accept) {
  if (is.list(prediction)) return(list(body = jsonlite::toJSON(prediction, auto_unbox = TRUE),
                                       content_type = "application/json"))
  sprintf("result=%.17g", prediction)
}
'''


def test_submit_directory_program_and_custom_handlers(lm_model, tmp_path):
    """SAGEMAKER_SUBMIT_DIRECTORY (a sourcedir.tar.gz) + SAGEMAKER_PROGRAM; custom input/predict/output."""
    root = make_root(tmp_path, lm_model[0], {"deploy.R": "stop('model/code/deploy.R must not be used')\n"})
    tarball = tmp_path / "sourcedir.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        data = CUSTOM.encode()
        info = tarfile.TarInfo("handler.R")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    server = Server(root, {"SAGEMAKER_SUBMIT_DIRECTORY": f"file://{tarball}", "SAGEMAKER_PROGRAM": "handler.R"})
    try:
        server.start()
        status, body, headers = server.invoke("2.5;120", "text/plain", accept="text/x-result")
        assert status == 200 and headers["content-type"] == "text/x-result"
        assert body.startswith(b"result=")
        assert_close([float(body.split(b"=")[1])], [2 * lm_model[1][0]])
        status, body, _ = server.invoke("boom", "text/plain")
        assert status == 400 and b"input_fn refuses boom" in body
        status, body, _ = server.invoke("2.5;120", "application/json")
        assert status == 415 and b"only text/plain" in body
        # 6 MB exactly is accepted (a raw body for a binary content type)
        status, body, headers = server.invoke(b"\0" * (6 * 1024 * 1024), "application/octet-stream")
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body) == {"nbytes": 6 * 1024 * 1024, "raw": True}
        assert "Error" not in server.output()
    finally:
        server.stop()


def test_warm_up_runs_no_user_code_before_a_request(lm_model, tmp_path):
    """The warm-up request runs in the parent with the default handlers: the program's predict_fn is first
    called by a real request, once per request, and answers correctly on each new connection. (How fast
    start-up and first requests are: benchmarks/bench_serving.py.)"""
    calls = tmp_path / "calls.txt"
    code = HANDLER + (f'predict_fn <- function(data, model) {{ cat("call\\n", file = "{calls}", append = TRUE)\n'
                      "  predict(model, newdata = data) }\n")
    root = make_root(tmp_path, lm_model[0], {"inference.R": code})
    server = Server(root)
    try:
        server.start()
        assert not calls.exists()
        for _ in range(5):
            status, body, _ = server.invoke(CSV_BODY, "text/csv")
            assert status == 200
            assert_close(floats_csv(body), lm_model[1])
        assert calls.read_text().count("call") == 5
    finally:
        server.stop()


def test_long_predict_does_not_block_ping_and_sigterm_stops_everything(lm_model, tmp_path):
    root = make_root(tmp_path, lm_model[0], {"inference.R": CUSTOM})
    busy_mark = tmp_path / "busy"
    server = Server(root, {"SM_R_MAGIC_WORKERS": "1", "BUSY_MARK": str(busy_mark)})
    try:
        server.start()
        result: dict[str, object] = {}

        def slow():
            try:
                result["response"] = server.invoke("2.5;120;5", "text/plain")
            except Exception as exc:  # the connection is cut by the shutdown
                result["error"] = exc

        thread = threading.Thread(target=slow, daemon=True)
        thread.start()
        assert wait_until(busy_mark.exists)
        # the only worker is busy in Sys.sleep(5): ping still answers at once, several times
        for _ in range(3):
            started = time.monotonic()
            status, _, _ = server.request("GET", "/ping", timeout=2)
            assert status == 200 and time.monotonic() - started < 2
        busy = descendants(server.proc.pid)
        assert len(busy) == 2, "the R process and its one worker"
        started = time.monotonic()
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.wait_exit(timeout=5) == 0
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in busy) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in busy), "R processes outlived SIGTERM"
        assert time.monotonic() - started < 4
        thread.join(timeout=5)
        assert "response" not in result or result["response"][0] != 200
        assert "[sm-r-magic] shutting down" in server.output()
    finally:
        server.stop()


def test_failing_model_fn_exits_non_zero_with_the_message(tmp_path):
    code = {"inference.R": 'load_it <- function(dir) stop("cannot load the model from ", basename(dir))\n'
                           "model_fn <- function(model_dir) load_it(model_dir)\n"}
    root = make_root(tmp_path, None, code)
    server = Server(root)
    try:
        server.start(wait=False)
        assert server.wait_exit(timeout=30) != 0
        failure = (root / "output" / "failure").read_text()
        assert "cannot load the model from model" in failure
        assert "load_it" in failure                   # a short traceback names the user's function
        assert "cannot load the model from model" in server.output()
        assert "serving" not in server.output()       # it never listened
    finally:
        server.stop()


def test_no_inference_code_is_a_clear_error(tmp_path):
    root = make_root(tmp_path)
    server = Server(root)
    try:
        server.start(wait=False)
        assert server.wait_exit(timeout=30) != 0
        assert "No inference code" in server.output()
        assert "deploy.R" in (root / "output" / "failure").read_text()
    finally:
        server.stop()


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_model_data_tarball_is_extracted(lm_model, tmp_path):
    model_tar = _tar(tmp_path / "model.tar.gz", {"model.rds": lm_model[0].read_bytes(),
                                                  "code/inference.R": HANDLER.encode()})
    root = make_root(tmp_path)
    server = Server(root, {"SM_R_MAGIC_MODEL_DATA": str(model_tar)})
    try:
        server.start()
        assert (root / "model" / "code" / "inference.R").exists()
        status, body, _ = server.invoke(CSV_BODY, "text/csv")
        assert status == 200
        assert_close(floats_csv(body), lm_model[1])
    finally:
        server.stop()


def test_unsafe_model_data_tarball_is_rejected(tmp_path):
    model_tar = _tar(tmp_path / "model.tar.gz", {"../evil.R": b"x", "code/inference.R": HANDLER.encode()})
    root = make_root(tmp_path)
    server = Server(root, {"SM_R_MAGIC_MODEL_DATA": str(model_tar)})
    try:
        server.start(wait=False)
        assert server.wait_exit(timeout=30) != 0
        assert "unsafe member" in (root / "output" / "failure").read_text()
        assert not (tmp_path / "evil.R").exists()
    finally:
        server.stop()


SEED_ENDPOINTS = r'''
model <- readRDS(file.path(Sys.getenv("SM_MODEL_DIR", "/opt/ml/model"), "model.rds"))

#* @get /ping
function() ""

#* @post /invocations
#* @serializer json list(digits = NA)
function(req) {
  df <- read.csv(text = req$postBody)
  as.numeric(predict(model, newdata = df))
}

#* @post /echo
#* @serializer unboxedJSON
function(req, a = "none") list(a = a, content_type = req$HTTP_CONTENT_TYPE, n = length(req$bodyRaw))
'''

PLUMBER_PROGRAMS = {
    # deploy.R runs a router plumbed from another file on a hard-coded host and port (the seed's layout)
    "plumb_file_run": {
        "deploy.R": 'library(plumber)\napp <- plumb("endpoints.R")\napp$run(host = "0.0.0.0", port = 8080)\n',
        "endpoints.R": SEED_ENDPOINTS,
    },
    # deploy.R is itself the plumber file (no run call: the container plumbs it)
    "annotated_deploy": {"deploy.R": SEED_ENDPOINTS},
    # programmatic router with pr_run()
    "pr_pipeline": {"deploy.R": r'''
library(plumber)
model <- readRDS(file.path(Sys.getenv("SM_MODEL_DIR"), "model.rds"))
pr() %>%
  pr_post("/invocations", function(req) as.numeric(predict(model, newdata = read.csv(text = rawToChar(req$bodyRaw)))),
          serializer = serializer_json(digits = NA)) %>%
  pr_post("/echo", function(req, a = "none") list(a = a, content_type = req$HTTP_CONTENT_TYPE,
                                                   n = length(req$bodyRaw)), serializer = serializer_unboxed_json()) %>%
  pr_run(host = "0.0.0.0", port = 8080)
'''},
}


@pytest.mark.parametrize("layout", sorted(PLUMBER_PROGRAMS))
def test_seed_plumber_deploy_served_unchanged(layout, lm_model, tmp_path):
    if subprocess.run([RSCRIPT, "-e", "q(status = !requireNamespace('plumber', quietly = TRUE))"]).returncode:
        pytest.skip("plumber is not installed")
    root = make_root(tmp_path, lm_model[0], PLUMBER_PROGRAMS[layout])
    server = Server(root)
    try:
        server.start()
        conn = server.connection()
        try:
            status, body, headers = server.invoke(CSV_BODY, "text/csv", conn=conn)
            assert status == 200, body
            assert headers["content-type"].startswith("application/json")
            assert_close(json.loads(body), lm_model[1])
            status, body, _ = server.request("POST", "/echo?a=x%20y&b=2", body="hello",
                                             headers={"Content-Type": "text/plain"}, conn=conn)
            assert status == 200
            assert json.loads(body) == {"a": "x y", "content_type": "text/plain", "n": 5}
            assert server.request("GET", "/nope", conn=conn)[0] == 404
            assert server.invoke(b"x" * (6 * 1024 * 1024 + 1), "text/csv", conn=conn)[0] == 413
        finally:
            conn.close()
        assert server.request("GET", "/ping")[0] == 200
        assert f"on 0.0.0.0:{server.port}" not in server.output()  # listened on our host, not the program's
        assert "Running plumber API" not in server.output()
    finally:
        server.stop()


# --- reliability: clients that go away, slow requests, workers that end ----------------------------------


def abort_request(port: int, body: bytes, content_type: str, reset: bool = False) -> None:
    """Send a whole request, then close the socket before the answer (reset: with RST, as a killed client)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def scaled_prediction(body: bytes) -> float:
    assert body.startswith(b"result="), body
    return float(body.split(b"=")[1])


def test_aborted_requests_and_client_timeouts_leave_the_endpoint_serving(lm_model, tmp_path):
    """Issue 10.1: a client that hangs up (or times out) while its request runs used to break the endpoint for
    good (HTTP 500 on every later request while /ping stayed 200). Now it only loses its own answer."""
    root = make_root(tmp_path, lm_model[0], {"inference.R": CUSTOM})
    busy_mark = tmp_path / "busy"
    server = Server(root, {"SM_R_MAGIC_WORKERS": "2", "BUSY_MARK": str(busy_mark)})
    try:
        server.start()
        for i in range(6):
            abort_request(server.port, b"2.5;120;0.5", "text/plain", reset=i % 2 == 1)
        for _ in range(3):
            conn = server.connection(timeout=0.2)
            with pytest.raises(OSError):  # the client gives up (socket timeout) before the 1 s prediction
                server.invoke("2.5;120;1", "text/plain", conn=conn)
            conn.close()
        assert wait_until(busy_mark.exists)  # slow requests did reach R before their clients left
        kept = server.connection()
        try:
            for i in range(20):
                status, body, _ = server.invoke("2.5;120", "text/plain", conn=kept if i % 2 else None)
                assert status == 200, body
                assert_close([scaled_prediction(body)], [2 * lm_model[1][0]])
        finally:
            kept.close()
        assert server.request("GET", "/ping")[0] == 200
        assert "internal error" not in server.output() and "Error" not in server.output()
    finally:
        server.stop()


def test_a_request_over_the_timeout_gets_504_and_its_worker_is_replaced(lm_model, tmp_path):
    root = make_root(tmp_path, lm_model[0], {"inference.R": CUSTOM})
    server = Server(root, {"SM_R_MAGIC_WORKERS": "1", "SM_R_MAGIC_REQUEST_TIMEOUT": "2"})
    try:
        server.start()
        first = r_workers(server)
        assert len(first) == 1
        status, body, _ = server.invoke("2.5;120;600", "text/plain")  # a ten-minute prediction
        assert status == 504 and b"SM_R_MAGIC_REQUEST_TIMEOUT" in body
        assert wait_until(lambda: not alive(first[0]))
        status, body, _ = server.invoke("2.5;120", "text/plain")
        assert status == 200
        assert_close([scaled_prediction(body)], [2 * lm_model[1][0]])
        now = r_workers(server)
        assert len(now) == 1 and now != first
        assert server.request("GET", "/ping")[0] == 200
        assert "took longer than 2 s" in server.output()
    finally:
        server.stop()


ENDING = r'''
model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))
input_fn <- function(body, content_type) body
predict_fn <- function(data, model) {
  if (data == "quit") quit(save = "no")
  if (data == "quit-without-last") quit(save = "no", runLast = FALSE)
  if (data == "crash") tools::pskill(Sys.getpid(), tools::SIGKILL)
  scratch <- tempfile()                      # R's temp folder still works
  writeLines(readLines("note.txt"), scratch)  # and so does the code folder (the working directory)
  paste(readLines(scratch), format(predict(model, newdata = data.frame(wt = 2.5, hp = 120)), digits = 15))
}
output_fn <- function(prediction, accept) prediction
'''


def test_a_worker_that_ends_is_replaced_and_ping_never_lies(lm_model, tmp_path):
    """quit() in user code (with or without .Last), a crash or a kill ends only that worker: its request gets
    500, a new worker replaces it, the staged code and R's temp folder stay. Whenever /ping says 200, an
    invocation succeeds."""
    tarball = _tar(tmp_path / "sourcedir.tar.gz", {"handler.R": ENDING.encode(), "note.txt": b"note\n"})
    root = make_root(tmp_path, lm_model[0])
    server = Server(root, {"SAGEMAKER_SUBMIT_DIRECTORY": str(tarball), "SAGEMAKER_PROGRAM": "handler.R",
                           "SM_R_MAGIC_WORKERS": "2"})
    expected = f"note {lm_model[1][0]:.15g}"

    def answers_correctly():
        status, body, _ = server.invoke("predict", "text/plain")
        assert status == 200, body
        assert body.decode().split()[0] == "note"
        assert_close([float(body.decode().split()[1])], [float(expected.split()[1])])

    try:
        server.start()
        for ending in ("quit", "quit-without-last", "crash"):
            status, body, _ = server.invoke(ending, "text/plain")
            assert status == 500 and b"worker" in body and b"ended" in body, (ending, body)
            for _ in range(4):
                answers_correctly()
        killed = r_workers(server)
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not any(alive(pid) for pid in killed))
        seen_ok = 0
        deadline = time.monotonic() + 30
        while seen_ok < 3 and time.monotonic() < deadline:
            if server.request("GET", "/ping")[0] == 200:
                answers_correctly()
                seen_ok += 1
        assert seen_ok == 3
        assert len(r_workers(server)) == 2 and not set(r_workers(server)) & set(killed)
    finally:
        server.stop()


def test_the_r_process_ending_stops_the_endpoint(lm_model, tmp_path):
    """Without the R process that forks workers nothing can be replaced: the front exits 1 (the endpoint fails
    visibly) rather than answering ping with no way to serve."""
    root = make_root(tmp_path, lm_model[0], {"inference.R": HANDLER})
    server = Server(root)
    try:
        server.start()
        r_parent = child_pids(server.proc.pid)
        assert len(r_parent) == 1
        workers = r_workers(server)
        os.kill(r_parent[0], signal.SIGKILL)
        assert server.wait_exit(timeout=30) == 1
        failure = (root / "output" / "failure").read_text()
        assert "the R process that forks the workers" in failure and "killed by signal 9" in failure
        assert wait_until(lambda: not any(alive(pid) for pid in workers))
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", server.port)) != 0
    finally:
        server.stop()


def test_bad_settings_and_a_taken_port_fail_before_r_starts(tmp_path):
    root = make_root(tmp_path, None, {"inference.R": HANDLER})
    server = Server(root, {"SM_R_MAGIC_REQUEST_TIMEOUT": "soon"})
    try:
        server.start(wait=False)
        assert server.wait_exit(timeout=30) == 2
        assert "SM_R_MAGIC_REQUEST_TIMEOUT='soon' is not a number" in (root / "output" / "failure").read_text()
        assert "loading model" not in server.output()
    finally:
        server.stop()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = Server(root)
        server.port = taken.getsockname()[1]
        server.env["SAGEMAKER_BIND_TO_PORT"] = str(server.port)
        try:
            server.start(wait=False)
            assert server.wait_exit(timeout=30) == 1
            assert f"could not serve on 127.0.0.1:{server.port}" in (root / "output" / "failure").read_text()
        finally:
            server.stop()


# --- where it listens ------------------------------------------------------------------------------------


def _decode_address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def listening_sockets() -> list[tuple[tuple[str, int], str]]:
    """((address, port), socket inode) of every listening TCP socket of this network namespace."""
    found = []
    for name in ("tcp", "tcp6"):
        try:
            lines = Path("/proc/net", name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                host, port = fields[1].split(":")
                found.append(((_decode_address(host), int(port, 16)), fields[9]))
    return found


def listening_addresses(pids) -> set[tuple[str, int]]:
    """(address, port) of the listening sockets the processes hold (from /proc/<pid>/fd)."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[len("socket:["):-1])
    return {address for address, inode in listening_sockets() if inode in inodes}


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than loopback (None if it has none)."""
    candidates = []
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for previous, line in zip(lines, lines[1:]):
            if "/32 host LOCAL" in line:
                candidates.append(previous.split()[-1])
    except OSError:
        pass
    for address in candidates:
        if not address.startswith("127."):
            return address
    return None


def test_listens_only_on_the_bind_host(default_server):
    """Issue 10.2: with SM_R_MAGIC_BIND_HOST=127.0.0.1 (the local backend) nothing listens beyond loopback: not
    the HTTP port (Rserve bound 0.0.0.0 whatever it was told), not the workers' internal port."""
    pids = [default_server.proc.pid, *descendants(default_server.proc.pid)]
    addresses = listening_addresses(pids)
    assert ("127.0.0.1", default_server.port) in addresses
    assert {host for host, _ in addresses} == {"127.0.0.1"}, addresses
    other = non_loopback_address()
    if other is None:
        pytest.skip("this machine has no non-loopback address to try (the listening addresses were checked)")
    with socket.socket() as sock:
        sock.settimeout(5)
        assert sock.connect_ex((other, default_server.port)) != 0


# --- prediction data -------------------------------------------------------------------------------------


def test_csv_without_a_header_row_is_read_by_position(default_server, lm_model):
    """Issue 10.8: SageMaker's CSV clients send no header row. Columns then go by position, named like the
    model's inputs; a header row is still recognised, with extra columns or in another order."""
    expected = lm_model[1]
    rows = "".join(f"{wt},{hp}\n" for wt, hp in NEWDATA)
    for body in (rows, rows.replace("\n", "\r\n"), "mpg,wt,hp\n" + "".join(f"1,{wt},{hp}\n" for wt, hp in NEWDATA),
                 "hp,wt\n" + "".join(f"{hp},{wt}\n" for wt, hp in NEWDATA),
                 '"wt","hp"\n' + "".join(f'"{wt}",{hp}\n' for wt, hp in NEWDATA)):
        status, answer, _ = default_server.invoke(body, "text/csv")
        assert status == 200, (body, answer)
        assert_close(floats_csv(answer), expected)
    status, answer, _ = default_server.invoke(f"{NEWDATA[0][0]},{NEWDATA[0][1]}", "text/csv")  # one row, no newline
    assert status == 200
    assert_close(floats_csv(answer), expected[:1])
    status, answer, _ = default_server.invoke("2.5,120,3\n", "text/csv")
    assert status == 400 and b"(wt, hp)" in answer and b"header" in answer
    # a text row above rows of numbers is a header even when it names no input: predict() then says what is missing
    status, answer, _ = default_server.invoke("speed\n1\n", "text/csv")
    assert status == 500 and b"'wt' not found" in answer
    status, answer, _ = default_server.invoke("2.5,120\n3.1\n", "text/csv")
    assert status == 400 and b"line 2" in answer


ECHO_TYPES = r'''
model_fn <- function(model_dir) NULL
predict_fn <- function(data, model) {
  data.frame(column = names(data), missing = vapply(data, function(col) sum(is.na(col)), 0L, USE.NAMES = FALSE),
             type = vapply(data, function(col) class(col)[[1]], "", USE.NAMES = FALSE))
}
'''


def test_na_strings_are_missing_in_json_as_in_csv_and_frames_come_back_as_rows(tmp_path):
    """Issue 10.8: the string "NA" is a missing value in JSON as in CSV; a data.frame prediction comes back as
    CSV rows without a header row (as SageMaker's CSV responses) and as JSON records."""
    root = make_root(tmp_path, None, {"inference.R": ECHO_TYPES})
    server = Server(root)
    try:
        server.start()
        records = [{"column": "s", "missing": 1, "type": "character"},
                   {"column": "x", "missing": 1, "type": "integer"}]
        bodies = [("text/csv", "s,x\nNA,1\nb,NA\n"), ("application/json", '{"s": ["NA", "b"], "x": [1, null]}'),
                  ("application/json", '[{"s": "NA", "x": 1}, {"s": "b", "x": "NA"}]')]
        for content_type, body in bodies:
            status, answer, _ = server.invoke(body, content_type, accept="application/json")
            assert status == 200, answer
            assert json.loads(answer) == records, (content_type, body)
        status, answer, headers = server.invoke(bodies[0][1], "text/csv")
        assert status == 200 and headers["content-type"] == "text/csv"
        assert answer.decode().splitlines() == ['"s",1,"character"', '"x",1,"integer"']
    finally:
        server.stop()


def test_prototype_is_a_row_of_the_models_own_inputs(default_server, lm_model):
    """Issue 10.13: GET /prototype gives one row of the model's inputs (its first training row), as CSV with a
    header or as JSON records, and it is a valid request body."""
    first = subprocess.run([RSCRIPT, "-e", "m <- readRDS(commandArgs(TRUE)[1]); cat(vapply(m$model[1, c('wt', 'hp')], "
                            "format, '', digits = 15))", str(lm_model[0])],
                           capture_output=True, text=True, check=True).stdout.split()
    status, body, headers = default_server.request("GET", "/prototype", headers={"Accept": "text/csv"})
    assert status == 200 and headers["content-type"] == "text/csv"
    assert body.decode().splitlines() == ["wt,hp", ",".join(first)]
    assert default_server.invoke(body, "text/csv")[0] == 200
    status, body, headers = default_server.request("GET", "/prototype")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == [{"wt": float(first[0]), "hp": float(first[1])}]
    assert default_server.invoke(body, "application/json")[0] == 200


def test_no_prototype_for_a_model_without_known_inputs(tmp_path):
    root = make_root(tmp_path, None, {"inference.R": ECHO_TYPES})
    server = Server(root)
    try:
        server.start()
        status, body, _ = server.request("GET", "/prototype")
        assert status == 404 and b"no example input" in body
    finally:
        server.stop()


def test_the_log_holds_only_our_lines(default_server):
    """Issue 10.14: no Rserve banner ("This session will block until Rserve is shut down") or other noise."""
    lines = [line for line in default_server.output().splitlines() if line.strip()]
    assert any("serving inference.R on 127.0.0.1" in line for line in lines)
    assert all(line.startswith("[sm-r-magic] ") for line in lines), lines


# --- HTTP -------------------------------------------------------------------------------------------------


def read_response(stream) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response from a buffered socket file (responses may follow one another: pipelining)."""
    status_line = stream.readline().decode()
    assert status_line.startswith("HTTP/1.1 "), status_line
    headers = {}
    while (line := stream.readline().decode().rstrip("\r\n")):
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return int(status_line.split()[1]), headers, stream.read(int(headers.get("content-length", 0)))


def test_http_chunked_bodies_expect_continue_pipelining_and_http10(default_server, lm_model):
    expected = lm_model[1]
    with socket.create_connection(("127.0.0.1", default_server.port), timeout=30) as sock:
        stream = sock.makefile("rb")
        body = CSV_BODY.encode()
        chunked = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:7], body[7:]))
        chunked += b"0\r\n\r\n"
        head = "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        sock.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunked)
        status, _, answer = read_response(stream)
        assert status == 200
        assert_close(floats_csv(answer), expected)
        # two requests in one write: two answers, in order
        sock.sendall((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
                     + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, answer = read_response(stream)
        assert status == 200 and floats_csv(answer)
        assert read_response(stream)[0] == 200
        # Expect: 100-continue gets the interim answer before the body is sent
        sock.sendall((head + f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode())
        assert stream.readline().startswith(b"HTTP/1.1 100 Continue")
        assert stream.readline() == b"\r\n"
        sock.sendall(body)
        status, _, answer = read_response(stream)
        assert status == 200 and floats_csv(answer)
    with socket.create_connection(("127.0.0.1", default_server.port), timeout=30) as sock:
        stream = sock.makefile("rb")
        sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
        status, headers, _ = read_response(stream)
        assert status == 200 and headers["connection"] == "close"
        assert stream.read() == b""  # the server closed the connection
    with socket.create_connection(("127.0.0.1", default_server.port), timeout=30) as sock:
        stream = sock.makefile("rb")
        sock.sendall(b"this is not http\r\n\r\n")
        assert read_response(stream)[0] == 400
        assert stream.read() == b""


def test_requests_queue_while_every_worker_is_busy(lm_model, tmp_path):
    root = make_root(tmp_path, lm_model[0], {"inference.R": CUSTOM})
    server = Server(root, {"SM_R_MAGIC_WORKERS": "1"})
    try:
        server.start()
        results = []
        threads = [threading.Thread(target=lambda: results.append(server.invoke("2.5;120;0.2", "text/plain")))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert [status for status, _, _ in results] == [200] * 4
    finally:
        server.stop()


def test_plumber_native_mode_serves_without_the_front(lm_model, tmp_path):
    if subprocess.run([RSCRIPT, "-e", "q(status = !requireNamespace('plumber', quietly = TRUE))"]).returncode:
        pytest.skip("plumber is not installed")
    root = make_root(tmp_path, lm_model[0], PLUMBER_PROGRAMS["annotated_deploy"])
    server = Server(root, {"SM_R_MAGIC_PLUMBER_NATIVE": "1"})
    try:
        server.start()
        status, body, _ = server.invoke(CSV_BODY, "text/csv")
        assert status == 200
        assert_close(json.loads(body), lm_model[1])
        assert "plumber/httpuv" in server.output()
    finally:
        server.stop()
