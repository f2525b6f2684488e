"""The container's `serve` mode, end to end: real R (`entrypoint.sh serve`), real HTTP on 127.0.0.1.

Each server runs with SM_R_MAGIC_ROOT pointing to a temporary folder laid out like /opt/ml and is stopped
by PID (SIGTERM, then SIGKILL of it and of any connection process left) when its test ends.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[1] / "sm_r_magic" / "container" / "entrypoint.sh"
RSCRIPT = shutil.which("Rscript")

pytestmark = pytest.mark.skipif(RSCRIPT is None, reason="Rscript is not installed")

NEWDATA = [(2.5, 120.0), (3.1, 200.0), (1.8, 95.0), (4.0, 150.0)]
CSV_BODY = "wt,hp\n" + "".join(f"{wt},{hp}\n" for wt, hp in NEWDATA)
JSON_RECORDS = json.dumps([{"wt": wt, "hp": hp} for wt, hp in NEWDATA])
JSON_COLUMNS = json.dumps({"wt": [wt for wt, _ in NEWDATA], "hp": [hp for _, hp in NEWDATA]})


def _r_available() -> bool:
    if RSCRIPT is None:
        return False
    probe = subprocess.run([RSCRIPT, "-e", "cat(requireNamespace('Rserve', quietly = TRUE))"],
                           capture_output=True, text=True, timeout=60)
    return probe.stdout.strip() == "TRUE"


@pytest.fixture(scope="module")
def lm_model(tmp_path_factory):
    """model.rds of lm(mpg ~ wt + hp, mtcars) and R's own predictions for NEWDATA (17 significant digits)."""
    if not _r_available():
        pytest.skip("R with the Rserve package is not available")
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


def child_pids(pid: int) -> list[int]:
    """Live (non-zombie) children of pid, from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            children.append(int(entry))
    return children


def zombie_children(pid: int) -> list[int]:
    zombies = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                zombies.append(int(entry))
    return zombies


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
                self.seen_children.update(child_pids(self.proc.pid))
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
        leftovers = set(child_pids(pid)) | self.seen_children
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


def test_connection_processes_are_reaped(default_server):
    for _ in range(10):
        assert default_server.request("GET", "/ping")[0] == 200
    deadline = time.monotonic() + 5
    while zombie_children(default_server.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Rserve reaps finished connection processes in its accept loop: under load the last one or two may
    # wait for the next connection, but they never accumulate.
    assert default_server.request("GET", "/ping")[0] == 200
    time.sleep(0.3)
    assert len(zombie_children(default_server.proc.pid)) <= 1
    time.sleep(0.2)
    assert len(child_pids(default_server.proc.pid)) == 0  # closed connections leave no process behind


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
  if (data$sleep > 0) Sys.sleep(data$sleep)
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
    server = Server(root, {"SM_R_MAGIC_WORKERS": "1"})
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
        time.sleep(0.7)
        # the only worker is busy in Sys.sleep(5): ping still answers at once, several times
        for _ in range(3):
            started = time.monotonic()
            status, _, _ = server.request("GET", "/ping", timeout=2)
            assert status == 200 and time.monotonic() - started < 2
        busy = child_pids(server.proc.pid)
        assert busy, "the long invocation runs in a forked connection process"
        started = time.monotonic()
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.wait_exit(timeout=5) == 0
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in busy) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in busy), "connection processes outlived SIGTERM"
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
