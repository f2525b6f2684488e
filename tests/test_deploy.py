"""%%r_deploy on the local backend: real R serving over real HTTP, as a user drives it."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from IPython.core.error import UsageError

from sm_r_magic.backends.processes import pid_alive
from sm_r_magic.errors import JobFailed, SmRMagicError
from sm_r_magic.predictor import InvocationError

from .conftest import run_cell
from .support.waiting import wait_until
from .test_foundation import PREP

TRAIN = '''
df <- read.csv(file.path(sm_channel("train"), "train.csv"))
model <- lm(mpg ~ wt + hp, data = df)
saveRDS(model, file.path(sm_model_dir(), "model.rds"))
'''

INFERENCE = '''
model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))
predict_fn <- function(data, model) predict(model, newdata = data)
'''


@pytest.fixture
def trained(shell, mtcars_csv):
    _, error = run_cell(shell, "r_processing", f"--name prep --input raw={mtcars_csv} --output train --output test",
                        PREP)
    assert error is None
    _, error = run_cell(shell, "r_train", '--name mtcars-lm --channel train={prep.outputs["train"]} --as job', TRAIN)
    assert error is None
    return shell.user_ns["job"]


def r_predictions(model_tar, test_csv):
    script = (f'd <- tempfile(); dir.create(d); untar("{model_tar}", exdir = d); '
              f'm <- readRDS(file.path(d, "model.rds")); '
              f'cat(sprintf("%.15g", predict(m, newdata = read.csv("{test_csv}"))), sep = "\\n")')
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=True).stdout
    return [float(v) for v in out.split()]


def deploy(shell, line, cell=INFERENCE):
    _, error = run_cell(shell, "r_deploy", line, cell)
    return error


def test_deploy_predict_csv_and_json_equal_r(shell, trained, capsys):
    import pandas as pd

    assert deploy(shell, "--model {job} --name mtcars-ep --as predictor") is None
    predictor = shell.user_ns["predictor"]
    try:
        assert predictor.status == "InService"
        assert "InService" in capsys.readouterr().out
        test_csv = os.path.join(shell.user_ns["prep"].outputs["test"], "test.csv")
        expected = r_predictions(trained.model_data, test_csv)
        test_df = pd.read_csv(test_csv)
        assert predictor.predict(test_df) == pytest.approx(expected, abs=1e-9)
        as_json = predictor.predict(test_df, content_type="application/json")
        assert as_json == pytest.approx(expected, abs=1e-9)
        one = predictor.predict({"wt": [2.6], "hp": [110]}, content_type="application/json")
        assert len(one) == 1
        assert "serving" in predictor.logs()
        shell.run_line_magic("r_endpoints", "")
        assert predictor.endpoint_name in capsys.readouterr().out
    finally:
        predictor.delete()


def test_delete_frees_port_and_process(shell, trained):
    assert deploy(shell, "--as p") is None  # default model: the session's latest training job
    p = shell.user_ns["p"]
    desc = p.describe()
    pid = json.load(open(os.path.join(desc["LocalEndpointFolder"], "state.json")))["pid"]
    port = int(desc["LocalUrl"].rsplit(":", 1)[1])
    assert pid_alive(pid)
    p.delete()
    assert p.status == "Deleted" and not pid_alive(pid)
    with pytest.raises(SmRMagicError, match="was deleted: deploy the model again with %%r_deploy --model"):
        p.predict({"wt": [3], "hp": [100]}, content_type="application/json")
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    from sm_r_magic import api

    assert p.endpoint_name not in [e.endpoint_name for e in api.endpoints()]


def test_custom_input_and_output_fn(shell, trained):
    code = INFERENCE + textwrap.dedent('''
        input_fn <- function(body, content_type) {
          if (content_type != "text/plain") sm_http_error("only text/plain", 415)
          vals <- as.numeric(strsplit(trimws(body), ",")[[1]])
          data.frame(wt = vals[1], hp = vals[2])
        }
        output_fn <- function(prediction, accept) paste0("mpg=", format(prediction, digits = 15))
    ''')
    assert deploy(shell, "--as custom", code) is None
    custom = shell.user_ns["custom"]
    try:
        body, _ = custom.invoke(b"2.6,110", content_type="text/plain", accept="text/plain")
        assert body.decode().startswith("mpg=")
        with pytest.raises(InvocationError) as info:
            custom.invoke(b"{}", content_type="application/json")
        assert info.value.status == 415
    finally:
        custom.delete()


def test_bad_payload_is_4xx_and_endpoint_stays_up(shell, trained):
    assert deploy(shell, "--as ep") is None
    ep = shell.user_ns["ep"]
    try:
        with pytest.raises(InvocationError) as info:
            ep.invoke(b"not,a\ncsv,\"", content_type="text/csv")
        assert 400 <= info.value.status < 500
        with pytest.raises(InvocationError) as info:
            ep.predict({"wt": [2.6]}, content_type="application/json")  # hp missing: predict() fails in R
        assert info.value.status >= 400 and "hp" in info.value.body
        assert ep.status == "InService"
        assert len(ep.predict({"wt": [3.0], "hp": [150]}, content_type="application/json")) == 1
    finally:
        ep.delete()


def test_empty_cell_serves_plumber_deploy_r_saved_with_the_model(shell, tmp_path):
    """The seed's convention: training saves code/deploy.R (a plumber app that runs itself on 8080); an
    empty %%r_deploy cell serves it. The unchanged seed file (hard-coded /opt/ml) runs in the docker tests."""
    deploy_r = textwrap.dedent('''
        library(plumber)
        model <- readRDS(file.path(Sys.getenv("SM_MODEL_DIR", "/opt/ml/model"), "model.rds"))
        pr() %>%
          pr_get("/ping", function() "") %>%
          pr_post("/invocations", function(req, res) {
            df <- read.csv(text = req$postBody)
            paste(format(predict(model, newdata = df), digits = 15), collapse = "\\n")
          }, serializer = serializer_text()) %>%
          pr_run(host = "0.0.0.0", port = 8080)
    ''')
    (tmp_path / "deploy.R").write_text(deploy_r)
    train = 'model <- lm(mpg ~ wt, data = mtcars)\nsaveRDS(model, file.path(sm_model_dir(), "model.rds"))\n'
    _, error = run_cell(shell, "r_train", f"--file {tmp_path / 'deploy.R'} --as seed", train)
    assert error is None
    shell.run_line_magic("r_deploy", "--model {seed} --as seed_ep")
    seed_ep = shell.user_ns["seed_ep"]
    try:
        body, _ = seed_ep.invoke(b"wt\n3\n", content_type="text/csv")
        expected = subprocess.run(["Rscript", "-e", 'cat(sprintf("%.6f", predict(lm(mpg ~ wt, mtcars), '
                                   'data.frame(wt = 3))))'], capture_output=True, text=True).stdout
        assert float(body.decode().splitlines()[-1].strip().strip('"')) == pytest.approx(float(expected), abs=1e-5)
    finally:
        seed_ep.delete()


def test_failing_model_fn_marks_endpoint_failed_with_r_message(shell, trained):
    code = 'model_fn <- function(model_dir) stop("cannot load the model: corrupt file")\n'
    result = shell.run_cell(f"%%r_deploy --as broken\n{code}")
    assert isinstance(result.error_in_exec, JobFailed)
    broken = shell.user_ns["broken"]
    assert broken.status == "Failed"
    assert "cannot load the model: corrupt file" in broken.failure_reason
    assert "cannot load the model" in str(result.error_in_exec)  # shown once by the view, carried by the error
    assert "shown above" in "\n".join(result.error_in_exec._render_traceback_())


def test_long_predict_does_not_block_ping(shell, trained):
    from sm_r_magic.backends.endpoint_http import ping

    code = INFERENCE.replace("predict_fn <- function(data, model) predict(model, newdata = data)",
                             "predict_fn <- function(data, model) { Sys.sleep(4); predict(model, newdata = data) }")
    assert deploy(shell, "--as slow --workers 1", code) is None
    slow = shell.user_ns["slow"]
    try:
        import threading

        done = {}
        thread = threading.Thread(target=lambda: done.setdefault("r", slow.predict({"wt": [3], "hp": [100]},
                                                                                     content_type="application/json")))
        thread.start()
        time.sleep(0.5)
        port = int(slow.url.rsplit(":", 1)[1])
        t0 = time.monotonic()
        assert ping(port, timeout=2)
        assert time.monotonic() - t0 < 2
        thread.join(10)
        assert len(done["r"]) == 1
    finally:
        slow.delete()


def test_deploy_dry_run_and_bad_model(shell, trained, local_root, capsys):
    assert deploy(shell, "--model {job} --dry-run") is None
    requests = json.loads(capsys.readouterr().out)
    assert set(requests) == {"CreateModel", "CreateEndpointConfig", "CreateEndpoint"}
    assert requests["CreateModel"]["PrimaryContainer"]["ModelDataUrl"] == trained.model_data
    assert requests["CreateModel"]["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.R"
    assert not (local_root / "endpoints").exists()
    error = deploy(shell, "--model /nope/model.tar.gz")
    assert isinstance(error, UsageError) and "does not exist" in str(error)
    error = deploy(shell, "--model no-such-job")
    assert isinstance(error, UsageError) and "no training job" in str(error)
    error = deploy(shell, "--serverless 1000")
    assert isinstance(error, UsageError) and "1024" in str(error)
    assert not (local_root / "endpoints").exists()


def test_endpoint_deleted_when_kernel_exits_unless_kept(tmp_path, trained, local_root):
    script = textwrap.dedent(f'''
        import sm_r_magic as s
        keep = s.deploy({INFERENCE!r}, model={trained.model_data!r}, name="kept", keep=True, progress="none")
        gone = s.deploy({INFERENCE!r}, model={trained.model_data!r}, name="gone", progress="none")
        print(keep.endpoint_name, gone.endpoint_name)
    ''')
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "SM_R_MAGIC_LOCAL_ROOT": str(local_root)}, timeout=120).stdout
    kept, gone = out.split()
    from sm_r_magic import api

    live = {p.endpoint_name: p for p in api.endpoints()}
    assert kept in live and gone not in live
    assert live[kept].predict({"wt": [3], "hp": [100]}, content_type="application/json")
    live[kept].delete()


def endpoint_state(local_root, name):
    return json.load(open(local_root / "endpoints" / name / "state.json"))


def port_closed(port):
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def server_children(pid):
    """Live processes whose parent is pid (the server's forked connection workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def kill_server(state):
    """Test cleanup: end a server (and its workers) a failed test may have left."""
    if pid_alive(state.get("pid")):
        try:
            os.killpg(state["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_missing_values_go_as_na_and_come_back_as_none(shell, trained, tmp_path):
    import pandas as pd

    assert deploy(shell, "--as na_ep") is None
    na_ep = shell.user_ns["na_ep"]
    try:
        frame = pd.DataFrame({"wt": [2.6, float("nan"), 3.0], "hp": [110.0, 120.0, None]})
        (tmp_path / "complete.csv").write_text("wt,hp\n2.6,110\n")
        expected = r_predictions(trained.model_data, tmp_path / "complete.csv")[0]
        # R reads null (JSON) and NA (CSV) as NA, predict() gives NA, which comes back as None either way
        for content_type in ("application/json", "text/csv"):
            result = na_ep.predict(frame, content_type=content_type)
            assert result[0] == pytest.approx(expected, abs=1e-9) and result[1:] == [None, None], content_type
        columns = {"wt": [None, 2.6], "hp": [100, 110]}
        assert na_ep.predict(columns, content_type="text/csv")[0] is None
        assert na_ep.predict(columns, content_type="application/json")[1] == pytest.approx(expected, abs=1e-9)
    finally:
        na_ep.delete()


def test_file_env_and_source_dir_reach_the_inference_code(shell, trained, tmp_path):
    (tmp_path / "offset.txt").write_text("100\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "helpers.R").write_text("scale_of <- function() 2\n")
    (tmp_path / "complete.csv").write_text("wt,hp\n3,100\n")
    code = textwrap.dedent('''
        source("helpers.R")
        model_fn <- function(model_dir) list(fit = readRDS(file.path(model_dir, "model.rds")),
                                             offset = as.numeric(readLines("offset.txt")))
        predict_fn <- function(data, model) {
          scale_of() * predict(model$fit, newdata = data) + model$offset + as.numeric(Sys.getenv("EXTRA"))
        }
    ''')
    line = f"--file {tmp_path / 'offset.txt'} --source-dir {tmp_path / 'src'} --env EXTRA=1000 --as extras"
    assert deploy(shell, line, code) is None
    extras = shell.user_ns["extras"]
    try:
        plain = r_predictions(trained.model_data, tmp_path / "complete.csv")[0]
        result = extras.predict({"wt": [3], "hp": [100]}, content_type="application/json")
        assert result == pytest.approx([2 * plain + 100 + 1000], abs=1e-9)
    finally:
        extras.delete()


KEEPING_KERNEL = '''
import sys
from IPython.core.interactiveshell import InteractiveShell

code = sys.argv[2]
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "sm_r_magic")
ip.run_line_magic("config", "RMagic.progress = 'none'")
assert ip.run_cell(f"%%r_deploy --model {sys.argv[1]} --name kept-flag --keep --as flag\\n{code}").success
ip.run_line_magic("config", "RMagic.keep_endpoints = True")
assert ip.run_cell(f"%%r_deploy --model {sys.argv[1]} --name kept-setting --as setting\\n{code}").success
print("ENDPOINTS", ip.user_ns["flag"].endpoint_name, ip.user_ns["setting"].endpoint_name)
'''


def test_keep_and_keep_endpoints_outlive_the_kernel_then_delete_all_frees_them(shell, trained, local_root,
                                                                                capsys):
    out = subprocess.run([sys.executable, "-c", KEEPING_KERNEL, trained.model_data, INFERENCE], capture_output=True,
                         text=True, env={**os.environ, "SM_R_MAGIC_LOCAL_ROOT": str(local_root)}, timeout=120)
    kept = next(line.split()[1:] for line in out.stdout.splitlines() if line.startswith("ENDPOINTS"))
    states = [endpoint_state(local_root, name) for name in kept]
    try:
        assert out.returncode == 0, out.stderr
        assert all(state["keep"] for state in states)
        assert deploy(shell, "--as own") is None  # and one of this kernel's own
        own = shell.user_ns["own"].endpoint_name
        states.append(endpoint_state(local_root, own))
        from sm_r_magic import api

        live = {p.endpoint_name: p for p in api.endpoints()}
        assert set(kept) | {own} <= set(live)
        for name in kept:  # served after their kernel exited
            assert len(live[name].predict({"wt": [3], "hp": [100]}, content_type="application/json")) == 1
        capsys.readouterr()
        shell.run_line_magic("r_endpoints", "--delete-all")
        printed = capsys.readouterr().out
        assert all(f"deleted {name}" in printed for name in kept + [own])
        for state in states:
            assert wait_until(lambda: not pid_alive(state["pid"]) and port_closed(state["port"]))
        shell.run_line_magic("r_endpoints", "")
        assert "no live endpoints" in capsys.readouterr().out
    finally:
        for state in states:
            kill_server(state)


DYING_KERNEL = '''
import sys, time
import sm_r_magic as s

p = s.deploy(sys.argv[2], model=sys.argv[1], name="orphan", progress="none")
print("ENDPOINT", p.endpoint_name, flush=True)
time.sleep(300)
'''


def test_endpoint_ends_with_its_sigkilled_kernel_and_is_deleted(trained, local_root):
    kernel = subprocess.Popen([sys.executable, "-c", DYING_KERNEL, trained.model_data, INFERENCE], text=True,
                              stdout=subprocess.PIPE, env={**os.environ, "SM_R_MAGIC_LOCAL_ROOT": str(local_root)})
    state, conn = {}, None
    try:
        name = kernel.stdout.readline().split()[1]
        state = endpoint_state(local_root, name)
        # a kept-alive connection holds one of the server's forked worker processes
        conn = http.client.HTTPConnection("127.0.0.1", state["port"], timeout=10)
        conn.request("POST", "/invocations", body="wt,hp\n3,100\n", headers={"Content-Type": "text/csv"})
        assert conn.getresponse().read()
        workers = server_children(state["pid"])
        assert workers
        kernel.kill()  # SIGKILL: no atexit handler runs
        kernel.wait(timeout=10)
        assert wait_until(lambda: not any(pid_alive(pid) for pid in [state["pid"], *workers]))
        assert port_closed(state["port"])
        from sm_r_magic import api

        assert name not in [p.endpoint_name for p in api.endpoints()]
        orphan = api.attach(name)
        assert orphan.status == "Deleted" and not orphan.failure_reason
        with pytest.raises(SmRMagicError, match="was deleted: deploy the model again with %%r_deploy --model"):
            orphan.predict({"wt": [3], "hp": [100]}, content_type="application/json")
    finally:
        if conn is not None:
            conn.close()
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait(timeout=10)
        kill_server(state)


def test_real_failure_stays_failed_after_its_kernel_is_gone(shell, trained, local_root):
    result = shell.run_cell('%%r_deploy --as broken\nmodel_fn <- function(model_dir) stop("corrupt model")\n')
    assert isinstance(result.error_in_exec, JobFailed)
    name = shell.user_ns["broken"].endpoint_name
    jf_state = local_root / "endpoints" / name / "state.json"
    state = json.load(open(jf_state))
    state.update(status="InService", owner_pid=2 ** 22 + 1)  # as if its kernel had died before noticing
    jf_state.write_text(json.dumps(state))
    assert name in [p.endpoint_name for p in shell.user_ns["broken"].backend.list_endpoints()]
    assert shell.user_ns["broken"].status == "Failed"
    assert "corrupt model" in shell.user_ns["broken"].failure_reason


# --- reliability, where endpoints listen, prediction data, the example row (issue 10) --------------------


def endpoint_port(predictor):
    return int(predictor.url.rsplit(":", 1)[1])


def abort_and_time_out(predictor):
    """Clients that go away before their answer (each asks for a 1 s prediction): 6 close the socket (FIN, or
    RST as a killed client does), 2 time out. Returns once two of those predictions have ended in R (then,
    with Rserve, their connection processes had quit and taken the shared temp folder with them)."""
    from .test_serve_container import abort_request

    port = endpoint_port(predictor)
    done = os.path.join(predictor.backend.endpoints.folder(predictor.endpoint_name).root, "model", "done.txt")
    slow_body = b'{"wt": [3.0], "hp": [150], "sleep": [1]}'
    for i in range(6):
        abort_request(port, slow_body, "application/json", reset=i % 2 == 1)
    for _ in range(2):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.2)
        with pytest.raises(OSError):
            conn.request("POST", "/invocations", body=slow_body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
        conn.close()
    assert wait_until(lambda: os.path.exists(done) and len(open(done).read().split()) >= 2, timeout=60)


def over_the_limit(predictor):
    """A prediction over the endpoint's request timeout (3 s here) is cut: 504, and its worker is replaced."""
    with pytest.raises(InvocationError) as info:
        predictor.predict({"wt": [3.0], "hp": [150], "sleep": [600]}, content_type="application/json")
    assert info.value.status == 504 and "SM_R_MAGIC_REQUEST_TIMEOUT" in info.value.body


SLOW_ON_ASK = INFERENCE.replace("predict_fn <- function(data, model) predict(model, newdata = data)", '''
predict_fn <- function(data, model) {
  if (!is.null(data$sleep)) {
    Sys.sleep(data$sleep[1])
    cat("done\\n", file = file.path(sm_model_dir(), "done.txt"), append = TRUE)
  }
  predict(model, newdata = data)
}''')


def test_local_endpoint_survives_clients_that_hang_up_and_listens_on_loopback_only(shell, trained):
    """Issues 10.1 and 10.2 through %%r_deploy: aborted requests, client timeouts and a request over the
    endpoint's timeout leave a working endpoint (every later prediction correct, ping 200); it listens on
    127.0.0.1 only, its R processes too."""
    from sm_r_magic.backends.endpoint_http import ping

    from .test_serve_container import descendants, listening_addresses, non_loopback_address

    assert deploy(shell, "--as tough --workers 2 --env SM_R_MAGIC_REQUEST_TIMEOUT=3", SLOW_ON_ASK) is None
    tough = shell.user_ns["tough"]
    try:
        port = endpoint_port(tough)
        expected = tough.predict({"wt": [3.0], "hp": [150]}, content_type="application/json")
        abort_and_time_out(tough)
        over_the_limit(tough)
        for _ in range(10):
            assert tough.predict({"wt": [3.0], "hp": [150]}, content_type="application/json") == expected
        assert ping(port) and tough.status == "InService"
        pid = endpoint_state_of(tough)["pid"]
        addresses = listening_addresses([pid, *descendants(pid)])
        assert ("127.0.0.1", port) in addresses and {host for host, _ in addresses} == {"127.0.0.1"}, addresses
        other = non_loopback_address()
        if other is not None:
            with socket.socket() as sock:
                sock.settimeout(5)
                assert sock.connect_ex((other, port)) != 0
        assert "block until" not in tough.logs()  # issue 10.14: no Rserve banner
    finally:
        tough.delete()


def endpoint_state_of(predictor):
    return json.load(open(os.path.join(predictor.local_folder, "state.json")))


R_FIRST_ROW = ('d <- tempfile(); dir.create(d); untar("{tar}", exdir = d); m <- readRDS(file.path(d, "model.rds")); '
               'cat(vapply(m$model[1, c("wt", "hp")], format, "", digits = 15))')


def test_example_row_prefills_the_try_it_box(shell, trained):
    """Issue 10.13: the widget's "Try it" box holds a row of the model's own inputs (not mtcars columns), as
    CSV with a header row and as JSON; it is a valid request."""
    pytest.importorskip("ipywidgets")
    from sm_r_magic.views.endpoint import EndpointView

    assert deploy(shell, "--as ex") is None
    ex = shell.user_ns["ex"]
    try:
        first = subprocess.run(["Rscript", "-e", R_FIRST_ROW.format(tar=trained.model_data)], capture_output=True,
                               text=True, check=True).stdout.split()
        assert ex.example_payload("text/csv") == f"wt,hp\n{first[0]},{first[1]}\n"
        assert json.loads(ex.example_payload("application/json")) == [{"wt": float(first[0]), "hp": float(first[1])}]
        w = EndpointView(ex)
        assert w.payload.value == ex.example_payload("text/csv")
        w.content_type.value = "application/json"
        assert w.payload.value == ex.example_payload("application/json")
        w.send_payload()
        assert "error" not in w.response.value and len(json.loads(w.last_response)) == 1
    finally:
        ex.delete()


FRAME_OUT = INFERENCE.replace("predict_fn <- function(data, model) predict(model, newdata = data)", '''
predict_fn <- function(data, model) data.frame(fit = predict(model, newdata = data), n = seq_len(nrow(data)))''')


def test_data_frame_predictions_come_back_as_rows_and_rows_go_without_header(shell, trained, tmp_path):
    """Issue 10.8 through the predictor: a predict_fn returning a data.frame gives rows of values (CSV) or records
    (JSON), never its header as the first row; rows sent without a header (as SageMaker's CSV serializer does)
    are read by position."""
    assert deploy(shell, "--as frames", FRAME_OUT) is None
    frames = shell.user_ns["frames"]
    try:
        (tmp_path / "two.csv").write_text("wt,hp\n2.6,110\n3.1,150\n")
        expected = r_predictions(trained.model_data, tmp_path / "two.csv")
        rows = frames.predict([[2.6, 110], [3.1, 150]], content_type="text/csv")
        assert [row[1] for row in rows] == [1, 2]
        assert [row[0] for row in rows] == pytest.approx(expected, abs=1e-9)
        records = frames.predict({"wt": [2.6, 3.1], "hp": [110, 150]}, content_type="application/json")
        assert [r["n"] for r in records] == [1, 2] and [r["fit"] for r in records] == pytest.approx(expected, abs=1e-9)
        assert frames.predict("2.6,110", content_type="text/csv")[0][0] == pytest.approx(expected[0], abs=1e-9)
    finally:
        frames.delete()


def test_deserialize_reads_a_header_row_only_when_the_response_says_so():
    from sm_r_magic.predictor import deserialize, serialize

    assert deserialize(b"1.5,a\n2,NA\n", "text/csv") == [[1.5, "a"], [2.0, None]]
    assert deserialize(b"fit,n\n1.5,1\n", "text/csv; header=present") == [{"fit": 1.5, "n": 1.0}]
    assert deserialize(b"3\nNA\n", "text/csv; charset=utf-8") == [3.0, None]
    assert serialize([[2.6, 110], [None, 150]], "text/csv") == b"2.6,110\nNA,150\n"
    assert serialize([2.6, 110], "text/csv") == b"2.6,110\n"


@pytest.mark.docker
def test_docker_endpoint_survives_clients_that_hang_up_and_is_published_on_loopback_only(shell, trained):
    """Issues 10.1 and 10.2 in the image (what SageMaker runs): aborted requests, client timeouts and a request
    over the timeout, then correct predictions; the port is published on 127.0.0.1 only (inside, serve listens
    on 0.0.0.0:8080)."""
    from sm_r_magic.backends.endpoint_http import ping

    from .support.docker_engine import IMAGE, require_image
    from .test_serve_container import listening_sockets, non_loopback_address

    require_image()
    shell.run_line_magic("config", f"RMagic.image = {IMAGE!r}")
    assert deploy(shell, "--backend docker --as boxed --workers 2 --env SM_R_MAGIC_REQUEST_TIMEOUT=3",
                  SLOW_ON_ASK) is None
    boxed = shell.user_ns["boxed"]
    try:
        assert boxed.status == "InService", boxed.failure_reason
        port = endpoint_port(boxed)
        expected = boxed.predict({"wt": [3.0], "hp": [150]}, content_type="application/json")
        abort_and_time_out(boxed)
        over_the_limit(boxed)
        for _ in range(10):
            assert boxed.predict({"wt": [3.0], "hp": [150]}, content_type="application/json") == expected
        assert ping(port) and boxed.status == "InService"
        assert "serving inference.R on 0.0.0.0:8080 with 2 workers" in boxed.logs()
        published = {host for (host, listening_port), _ in listening_sockets() if listening_port == port}
        assert published <= {"127.0.0.1"}, published  # docker-proxy (if any) on loopback only
        other = non_loopback_address()
        if other is not None:
            with socket.socket() as sock:
                sock.settimeout(5)
                assert sock.connect_ex((other, port)) != 0
        assert "block until" not in boxed.logs()
    finally:
        boxed.delete()
