"""The foundation flow with real R on the local backend: processing -> training, as a user types it."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from sm_r_magic.backends.processes import pid_alive
from sm_r_magic.errors import JobFailed

from .conftest import run_cell
from .support.rlang import r_output
from .support.waiting import wait_for

PREP = '''
df <- read.csv(file.path(sm_input("raw"), "mtcars.csv"))
idx <- seq_len(nrow(df)) %% 4 != 0
write.csv(df[idx, ], file.path(sm_output("train"), "train.csv"), row.names = FALSE)
write.csv(df[!idx, ], file.path(sm_output("test"), "test.csv"), row.names = FALSE)
'''

TRAIN = '''
df <- read.csv(file.path(sm_channel("train"), "train.csv"))
model <- lm(as.formula(sm_hp("formula")), data = df)
saveRDS(model, file.path(sm_model_dir(), "model.rds"))
cat("train_rmse:", sqrt(mean(residuals(model)^2)), "\\n")
'''


def test_processing_then_training_as_written(shell, mtcars_csv, capsys):
    result, error = run_cell(shell, "r_processing",
                             f"--name prep --input raw={mtcars_csv} --output train --output test", PREP)
    assert error is None
    prep = shell.user_ns["prep"]
    assert result is None  # its summary is printed: the cell shows no (empty) Out[N]
    assert prep.status == "Completed"
    assert set(prep.outputs) == {"train", "test"}
    train_csv = os.path.join(prep.outputs["train"], "train.csv")
    test_csv = os.path.join(prep.outputs["test"], "test.csv")
    assert len(open(train_csv).read().splitlines()) == 1 + 24
    assert len(open(test_csv).read().splitlines()) == 1 + 8

    result, error = run_cell(shell, "r_train",
                             '--name mtcars-lm --channel train={prep.outputs["train"]} '
                             '--hp formula="mpg ~ wt + hp" --as job', TRAIN)
    assert error is None
    job = shell.user_ns["job"]
    assert result is None and "mtcars_lm" not in shell.user_ns
    assert job.status == "Completed"
    assert job.name.startswith("mtcars-lm-")
    assert job.hyperparameters == {"formula": "mpg ~ wt + hp"}
    with tarfile.open(job.model_data) as tar:
        names = tar.getnames()
    assert "model.rds" in names and "code/train.R" in names
    logs = job.logs()
    rmse = float(logs.split("train_rmse:")[1].split()[0])
    expected = float(r_output(f'df <- read.csv("{train_csv}"); m <- lm(mpg ~ wt + hp, df); '
                            'cat(sqrt(mean(residuals(m)^2)))'))
    assert rmse == pytest.approx(expected, rel=1e-6)
    out = capsys.readouterr().out
    assert "train_rmse:" in out and "Completed" in out and job.model_data in out


def test_dry_run_prints_request_and_creates_nothing(shell, mtcars_csv, local_root, capsys):
    result, error = run_cell(shell, "r_train",
                             f"--name lm --channel train={mtcars_csv} --hp alpha=0.5 --hp formula='mpg ~ wt' "
                             "--instance-type ml.c5.xlarge --env FOO=bar --dry-run", "x <- 1")
    assert error is None and result is None
    request = json.loads(capsys.readouterr().out)
    assert request["TrainingJobName"].startswith("lm-")
    assert request["HyperParameters"]["alpha"] == "0.5"
    assert request["HyperParameters"]["formula"] == '"mpg ~ wt"'
    assert json.loads(request["HyperParameters"]["sagemaker_program"]) == "train.R"
    assert request["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
    assert request["Environment"] == {"FOO": "bar"}
    assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == str(mtcars_csv)
    assert not local_root.exists()
    assert "lm" not in shell.user_ns


def test_hyperparameters_json_option_and_typed_sm_hp(shell, capsys):
    code = '''
cat("alpha", sm_hp("alpha") * 2, class(sm_hp("alpha")), "\\n")
cat("n", sm_hp("n", 1L) + 1L, class(sm_hp("n", 1L)), "\\n")
cat("flag", isTRUE(sm_hp("flag")), "\\n")
cat("formula", sm_hp("formula"), "\\n")
cat("missing", sm_hp("nope", "dflt"), "\\n")
cat("list", paste(sm_hp("layers"), collapse = "+"), "\\n")
cat("limits", sm_hp("tol", 1.0), sm_hp("max", 1.0), "\\n")
'''
    _, error = run_cell(shell, "r_train", "--hyperparameters '{\"alpha\": 0.25, \"layers\": [2, 3]}' "
                        "--hp n=4 --hp flag=true --hp formula=\"mpg ~ wt\" --hp tol=NaN --hp max=Infinity --as j",
                        code)
    assert error is None
    logs = shell.user_ns["j"].logs()
    assert "alpha 0.5 numeric" in logs
    assert "n 5 integer" in logs
    assert "flag TRUE" in logs
    assert "formula mpg ~ wt" in logs
    assert "missing dflt" in logs
    assert "list 2+3" in logs
    assert "limits NaN Inf" in logs


def test_container_decodes_hyperparameters_encoded_by_other_clients(tmp_path, r_available):
    """The SDK sends JSON-encoded strings; other clients send raw strings: both decode."""
    from sm_r_magic.paths import ENTRYPOINT

    root = tmp_path / "ml"
    (root / "input" / "config").mkdir(parents=True)
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.R").write_text(
        'a <- sm_hp("alpha"); f <- sm_hp("formula"); r <- sm_hp("raw"); e <- Sys.getenv("SM_HP_FORMULA")\n'
        'cat(class(a), a + 1, "|", f, "|", r, "|", e, "|", Sys.getenv("SM_CHANNELS"), "\\n")\n'
        'stopifnot(!"sagemaker_program" %in% names(sm_hyperparameters()))\n')
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps({
        "alpha": "0.5", "formula": '"mpg ~ wt"', "raw": "mpg ~ hp",
        "sagemaker_program": '"train.R"', "sagemaker_submit_directory": json.dumps(str(code)),
    }))
    proc = subprocess.run(["/bin/sh", ENTRYPOINT, "train"], env={**os.environ, "SM_R_MAGIC_ROOT": str(root)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "numeric 1.5 | mpg ~ wt | mpg ~ hp | mpg ~ wt | [] " in proc.stdout
    assert (root / "model" / "code" / "train.R").exists()


def test_failure_shows_r_error_and_traceback(shell, local_root):
    code = 'f <- function(x) g(x)\ng <- function(x) stop("boom: ", x)\nf("bad input")\n'
    result = shell.run_cell(f"%%r_train --name failing --as failed\n{code}")
    assert isinstance(result.error_in_exec, JobFailed)
    job = shell.user_ns["failed"]
    assert job.status == "Failed"
    reason = job.failure_reason
    assert "boom: bad input" in reason
    assert "f(\"bad input\") at train.R#3" in reason and "g(x) at train.R#1" in reason
    assert os.path.isdir(job.local_folder)
    rendered = "\n".join(result.error_in_exec._render_traceback_())
    # the cell's progress already showed the R error: the raised error points at it and at the job folder,
    # and still carries it for nbclient/papermill
    assert "shown above" in rendered and job.local_folder in rendered and "boom: bad input" not in rendered
    assert "boom: bad input" in str(result.error_in_exec)


def test_traceback_holds_the_users_frames_and_warnings_read_like_r(shell, local_root):
    """No frames of our own error handler or of tryCatch's machinery; a user function named h is kept;
    long calls are shortened, not cut mid-word into the next line; top-level warnings say "Warning:"."""
    code = ('h <- function() tryCatch(stop("inner"), error = function(e) stop(paste("outer:", conditionMessage(e))))\n'
            'x <- as.integer("a")\n'
            'h()\n')
    result = shell.run_cell(f"%%r_train --name traced --as traced\n{code}")
    assert isinstance(result.error_in_exec, JobFailed)
    job = shell.user_ns["traced"]
    lines = job.failure_reason.splitlines()
    assert lines[0] == "Error in value[[3L]](cond): outer: inner"
    frames = [line.split(": ", 1)[1] for line in lines[2:]]
    assert frames[0] == "h() at train.R#3"
    assert frames[-1] == 'stop(paste("outer:", conditionMessage(e))) at train.R#1'
    assert not any(f.startswith(("tryCatchList", "tryCatchOne", "doTryCatch", "(function", ".handleSimpleError"))
                   for f in frames)
    assert "Warning: NAs introduced by coercion" in job.logs() and "eval(ei, envir)" not in job.logs()

    code = ('g <- function(x) stop(sprintf("value %s is bad and this message is long enough to pass the width", x))\n'
            'library(surely.not.installed)\n')
    shell.run_cell(f"%%r_train --name pkg --as pkg\n{code}")
    lines = shell.user_ns["pkg"].failure_reason.splitlines()
    assert lines[0].startswith("Error in library(surely.not.installed): there is no package called")
    assert [line.split(": ", 1)[1] for line in lines[2:]] == [
        "library(surely.not.installed) at train.R#2", "stop(packageNotFoundError(package, lib.loc, sys.call()))"]

    # an error inside our helpers points at the call the user wrote, not at the helpers' insides
    shell.run_cell('%%r_train --name helper --as helper\nread_train <- function() sm_channel("train")\nread_train()\n')
    lines = shell.user_ns["helper"].failure_reason.splitlines()
    assert lines[0].startswith("Error: channel 'train' was not given: pass --channel train=URI")
    assert [line.split(": ", 1)[1] for line in lines[2:]] == ["read_train() at train.R#2",
                                                              'sm_channel("train") at train.R#1']


def _failure_lines(shell, line, code):
    result = shell.run_cell(f"%%r_train {line} --as failed\n{code}")
    assert isinstance(result.error_in_exec, JobFailed), result.error_in_exec
    job = shell.user_ns["failed"]
    lines = job.failure_reason.splitlines()
    assert lines[1:2] == ["Traceback (innermost last):"], job.failure_reason
    return job, lines[0], [frame.split(": ", 1)[1] for frame in lines[2:]]


def test_options_warn_2_stops_the_job_at_top_level_and_in_functions(shell, local_root):
    """options(warn = 2) turns warnings into errors, as in a bare Rscript, and the traceback holds the user's
    frames only (not the four frames of R's warning machinery), the failing line last."""
    job, headline, frames = _failure_lines(shell, "", 'options(warn = 2)\nx <- as.integer("a")\ncat("still running\\n")\n')
    assert "still running" not in job.logs()
    assert headline == "Error: (converted from warning) NAs introduced by coercion"
    assert frames == ['x <- as.integer("a") at train.R#2']

    code = 'options(warn = 2)\nto_int <- function(v) {\n  n <- as.integer(v)\n  n + 1L\n}\nto_int("a")\n'
    _, headline, frames = _failure_lines(shell, "", code)
    assert headline == 'Error in to_int("a"): (converted from warning) NAs introduced by coercion'
    assert frames == ['to_int("a") at train.R#6', "n <- as.integer(v) at train.R#3"]

    # warn = -1 silences a top-level warning, as in R
    _, error = run_cell(shell, "r_train", "--as quiet", 'options(warn = -1)\nx <- as.integer("a")\ncat("done\\n")\n')
    assert error is None
    assert "NAs introduced" not in shell.user_ns["quiet"].logs() and "done" in shell.user_ns["quiet"].logs()


def test_error_inside_package_code_names_the_users_call_and_line(shell, local_root):
    """lm() fails inside model.frame(): the user needs their own call and line, and a traceback that starts at
    their code (R alone says "Error in eval(predvars, data, env): object 'y' not found")."""
    _, headline, frames = _failure_lines(shell, "", "x <- 1\n# fit it\nfit <- lm(y ~ x, data = data.frame(z = 1))\n")
    assert headline == "Error in lm(y ~ x, data = data.frame(z = 1)) at train.R#3: object 'y' not found"
    assert frames[0] == "lm(y ~ x, data = data.frame(z = 1)) at train.R#3"
    assert frames[-1] == "eval(predvars, data, env)"
    assert not any(f.startswith(("withVisible", "eval(ei, envir)", "source(", ".sm_")) for f in frames)


SHAPES = {
    "user function": ('f <- function(x) g(x)\ng <- function(x) stop("boom: ", x)\nf("bad")\n', "",
                      "Error in g(x): boom: bad",
                      ['f("bad") at train.R#3', "g(x) at train.R#1", 'stop("boom: ", x) at train.R#2']),
    "top-level stop": ('x <- 1\nstop("no data")\n', "", "Error: no data", ['stop("no data") at train.R#2']),
    "top-level primitive": ('x <- 1\ny <- sqrt("a")\n', "", 'Error in sqrt("a"): non-numeric argument to mathematical '
                            "function", ['y <- sqrt("a") at train.R#2']),
    "lapply callback": ('res <- lapply(1:3, function(i) if (i == 2) stop("bad item ", i) else i)\n', "",
                        "Error in FUN(X[[i]], ...): bad item 2",
                        ["lapply(1:3, function(i) if (i == 2) stop(\"bad item \", i) else i) at train.R#1",
                         "FUN(X[[i]], ...)", 'stop("bad item ", i) at train.R#1']),
    "lm in sapply": ('fits <- sapply(1:2, function(i) coef(lm(y ~ x, data.frame(z = i))))\n', "",
                     "Error in coef(lm(y ~ x, data.frame(z = i))) at train.R#1: object 'y' not found", None),
    "tryCatch rethrow": ('r <- tryCatch(sqrt("a"), error = function(e) stop(e))\n', "",
                         'Error in sqrt("a"): non-numeric argument to mathematical function',
                         ['tryCatch(sqrt("a"), error = function(e) stop(e)) at train.R#1', "value[[3L]](cond)",
                          "stop(e) at train.R#1"]),
    "sourced helper function": ('source("R/utils.R")\ndouble_it("a")\n', "--source-dir {src}",
                                'Error in double_it("a"): double_it needs a number',
                                ['double_it("a") at train.R#2', 'stop("double_it needs a number") at utils.R#2']),
    "sourced file top level": ('source("R/broken.R")\n', "--source-dir {src}",
                               "Error: object 'undefined_thing' not found",
                               ['source("R/broken.R") at train.R#1', "y <- undefined_thing + 1 at broken.R#2"]),
    "sm_hp value": ('n <- sm_hp("trees", 1L)\n', "--hp trees=many",
                    "Error: hyperparameter 'trees' = 'many' is not a valid integer", ['sm_hp("trees", 1L) at train.R#1']),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_failures_of_each_shape_show_the_users_frames(shell, local_root, tmp_path, shape):
    code, line, headline, frames = SHAPES[shape]
    src = tmp_path / "src"
    (src / "R").mkdir(parents=True)
    (src / "R" / "utils.R").write_text('double_it <- function(x) {\n  if (!is.numeric(x)) stop("double_it needs a '
                                       'number")\n  2 * x\n}\n')
    (src / "R" / "broken.R").write_text("x <- 1\ny <- undefined_thing + 1\n")
    _, got_headline, got_frames = _failure_lines(shell, line.format(src=src), code)
    assert got_headline == headline
    if frames is not None:
        assert got_frames == frames
    assert not any(f.startswith(("tryCatchList", "doTryCatch", ".handleSimpleError", "withVisible", "eval(ei"))
                   for f in got_frames)


def test_async_returns_at_once_and_wait_finishes(shell, capsys):
    t0 = time.monotonic()
    _, error = run_cell(shell, "r_train", "--name slow --async --as slow", 'Sys.sleep(2)\ncat("done\\n")')
    assert error is None
    assert time.monotonic() - t0 < 2
    job = shell.user_ns["slow"]
    assert job.status == "InProgress"
    job.wait(progress="none")
    assert job.status == "Completed" and "done" in job.logs()


def test_stop_ends_as_stopped(shell):
    _, error = run_cell(shell, "r_train", "--name sleeper --async --as sleeper", "Sys.sleep(60)")
    assert error is None
    job = shell.user_ns["sleeper"]
    wait_for(lambda: job.secondary_status == "Training")
    t0 = time.monotonic()
    job.stop()
    assert job.status == "Stopped"
    assert time.monotonic() - t0 < 10


def test_sigterm_to_r_ends_as_failed_not_hung(shell):
    _, error = run_cell(shell, "r_train", "--name killed --async --as killed", "Sys.sleep(60)")
    assert error is None
    job = shell.user_ns["killed"]
    state_file = os.path.join(job.local_folder, "state.json")
    wait_for(lambda: json.load(open(state_file)).get("child_pid"))
    os.kill(json.load(open(state_file))["child_pid"], signal.SIGTERM)
    wait_for(lambda: job.done, timeout=15)
    assert job.status == "Failed"
    assert "SIGTERM" in job.failure_reason


def test_killed_runner_takes_r_and_what_r_started_with_it(shell, local_root):
    """kill -9 of the local job runner: R ends with it (parent-death signal), the process R started is ended
    when the job is next looked at, and the job is Failed saying why."""
    code = 'system("sh -c \'echo $$ > child.pid; exec sleep 300\'", wait = FALSE)\nSys.sleep(300)\n'
    _, error = run_cell(shell, "r_train", "--name orphan --async --as job", code)
    assert error is None
    job = shell.user_ns["job"]
    state_file = os.path.join(job.local_folder, "state.json")
    pid_file = os.path.join(job.local_folder, "opt", "ml", "code", "child.pid")
    wait_for(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(), timeout=30)
    state = json.load(open(state_file))
    r_pid, runner_pid, sleep_pid = state["child_pid"], state["runner_pid"], int(open(pid_file).read())
    assert pid_alive(r_pid) and pid_alive(sleep_pid)
    try:
        os.kill(runner_pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(r_pid), timeout=30)  # without anyone asking for the job's status
        assert job.status == "Failed"
        assert job.failure_reason.startswith(f"the local job runner (pid {runner_pid}) was killed by SIGKILL; "
                                             "R was stopped with it")
        wait_for(lambda: not pid_alive(sleep_pid), timeout=30)
    finally:
        for pid in (r_pid, sleep_pid):
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.docker
def test_killed_runner_of_a_docker_job_removes_its_container(settings, local_root):
    """The docker backend's runner runs the `docker run` client, whose end does not end the container: a killed
    runner's container is removed, and the job is Failed saying so."""
    from sm_r_magic import api
    from sm_r_magic.backends.docker import container_name

    from .support.docker_engine import IMAGE, containers, require_image

    require_image()
    settings.image = IMAGE
    job = api.train("Sys.sleep(300)\n", backend="docker", name="orphan", wait=False, progress="none")
    name = container_name(job.name)
    state_file = os.path.join(job.local_folder, "state.json")
    try:
        wait_for(lambda: containers(name=name) and job.secondary_status == "Training", timeout=60)
        runner_pid = json.load(open(state_file))["runner_pid"]
        os.kill(runner_pid, signal.SIGKILL)
        wait_for(lambda: job.status == "Failed", timeout=30)
        assert job.failure_reason.startswith(f"the local job runner (pid {runner_pid}) was killed by SIGKILL; "
                                             f"its container {name} was removed with it")
        wait_for(lambda: not containers(name=name), timeout=60)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_interrupt_detaches_and_job_keeps_running(shell, monkeypatch, capsys):
    from sm_r_magic import views

    real_sleep = time.sleep
    calls = {"n": 0}

    def interrupting_sleep(seconds):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_sleep(seconds)

    monkeypatch.setattr(views.Clock, "sleep", staticmethod(interrupting_sleep))  # Ctrl-C while the cell waits
    _, error = run_cell(shell, "r_train", "--name detach --as detached", 'Sys.sleep(1.5)\ncat("finished\\n")')
    monkeypatch.setattr(views.Clock, "sleep", staticmethod(real_sleep))
    assert error is None
    out = capsys.readouterr().out
    assert "detached" in out and "%r_attach" in out
    job = shell.user_ns["detached"]
    assert job.status == "InProgress"
    job.wait(progress="none")
    assert job.status == "Completed" and "finished" in job.logs()


def test_reattach_by_name_after_restart(shell, local_root):
    _, error = run_cell(shell, "r_train", "--name again --as first", 'cat("hello from R\\n")')
    assert error is None
    name = shell.user_ns["first"].name
    # A new process (a restarted kernel) finds the job by name and by base name.
    script = ("import sm_r_magic as s; j = s.attach(%r); print(j.status, j.logs().strip()); "
              "print(s.attach('again').name)" % name)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "SM_R_MAGIC_LOCAL_ROOT": str(local_root)}).stdout
    assert out.splitlines() == ["Completed hello from R", name]
    handle = shell.run_line_magic("r_attach", name)
    assert handle.status == "Completed"


def test_training_toolkit_environment_output_data_and_exit_code(shell, mtcars_csv):
    """The SM_* variables of sagemaker-training-toolkit, sm_output_data_dir() -> output.tar.gz,
    sm_checkpoint_dir(), and the recorded exit code."""
    code = r'''
env <- Sys.getenv(c("SM_MODEL_DIR", "SM_CHANNELS", "SM_CHANNEL_TRAIN", "SM_HPS", "SM_HP_ALPHA", "SM_HOSTS",
                    "SM_CURRENT_HOST", "SM_NUM_CPUS", "SM_NUM_GPUS", "SM_OUTPUT_DATA_DIR", "SM_OUTPUT_DIR",
                    "SM_INPUT_DIR", "SM_TRAINING_ENV"))
writeLines(jsonlite::toJSON(as.list(env), auto_unbox = TRUE), file.path(sm_model_dir(), "env.json"))
stopifnot(identical(env[["SM_CHANNEL_TRAIN"]], sm_channel("train")), identical(env[["SM_MODEL_DIR"]], sm_model_dir()))
writeLines("diagnostics", file.path(sm_output_data_dir(), "report.txt"))
writeLines("step 3", file.path(sm_checkpoint_dir(), "ckpt.txt"))
'''
    _, error = run_cell(shell, "r_train", f"--name toolkit --channel train={mtcars_csv.parent} --hp alpha=0.5 "
                        "--as job", code)
    assert error is None
    job = shell.user_ns["job"]
    assert job.describe()["ExitCode"] == 0
    with tarfile.open(job.model_data) as tar:
        env = json.load(tar.extractfile("env.json"))
    root = os.path.join(job.local_folder)
    assert json.loads(env["SM_CHANNELS"]) == ["train"]
    assert os.path.basename(env["SM_CHANNEL_TRAIN"]) == "train" and env["SM_CHANNEL_TRAIN"].startswith(root)
    assert json.loads(env["SM_HPS"]) == {"alpha": 0.5} and env["SM_HP_ALPHA"] == "0.5"
    assert json.loads(env["SM_HOSTS"]) == ["algo-1"] and env["SM_CURRENT_HOST"] == "algo-1"
    assert int(env["SM_NUM_CPUS"]) == os.cpu_count() and env["SM_NUM_GPUS"] == "0"
    assert env["SM_OUTPUT_DATA_DIR"] == os.path.join(env["SM_OUTPUT_DIR"], "data")
    training_env = json.loads(env["SM_TRAINING_ENV"])
    assert training_env["hyperparameters"] == {"alpha": 0.5} and training_env["job_name"] == job.name
    assert training_env["channel_input_dirs"] == {"train": env["SM_CHANNEL_TRAIN"]}
    with tarfile.open(job.outputs["output"]) as tar:
        assert tar.extractfile("report.txt").read() == b"diagnostics\n"
    with open(os.path.join(job.local_folder, "opt", "ml", "checkpoints", "ckpt.txt")) as fh:
        assert fh.read() == "step 3\n"

    _, error = run_cell(shell, "r_train", "--name exits --as bad", "quit(status = 3)")
    assert isinstance(error, JobFailed)
    assert shell.user_ns["bad"].describe()["ExitCode"] == 3


def test_file_uri_inputs_and_explicit_output_locations(shell, mtcars_csv, tmp_path, local_root):
    published = tmp_path / "published" / "train"
    _, error = run_cell(shell, "r_processing",
                        f"--name uris --input raw=file://{mtcars_csv} --output train={published} --output test --as prep",
                        PREP)
    assert error is None
    prep = shell.user_ns["prep"]
    assert prep.outputs["train"] == str(published)
    assert prep.outputs["test"].startswith(str(local_root)) and "uris-" in prep.outputs["test"]
    assert len((published / "train.csv").read_text().splitlines()) == 1 + 24


def test_jobs_are_listed_after_a_restart(shell, local_root, capsys):
    for name in ("listed-a", "listed-b"):
        _, error = run_cell(shell, "r_train", f"--name {name}", 'cat("hi\\n")')
        assert error is None
    capsys.readouterr()
    # a new process (a restarted kernel) lists them with their status
    script = ("from IPython.testing.globalipapp import start_ipython; ip = start_ipython(); "
              "ip.run_line_magic('config', 'RMagic.progress = \"text\"'); "
              "ip.run_line_magic('load_ext', 'sm_r_magic'); ip.run_line_magic('r_jobs', '')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "SM_R_MAGIC_LOCAL_ROOT": str(local_root)}).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("listed-")]
    assert [(r[0].rsplit("-", 3)[0], r[1], r[2], r[3]) for r in rows] == [
        ("listed-a", "training", "local", "Completed"), ("listed-b", "training", "local", "Completed")]


def test_train_mode_execs_r(shell):
    """entrypoint.sh execs R: the process the runner started is R itself, so SIGTERM reaches R."""
    _, error = run_cell(shell, "r_train", "--name exec --async --as j", "Sys.sleep(30)")
    assert error is None
    job = shell.user_ns["j"]
    try:
        state_file = os.path.join(job.local_folder, "state.json")
        wait_for(lambda: json.load(open(state_file)).get("child_pid") and job.secondary_status == "Training")
        pid = json.load(open(state_file))["child_pid"]
        # the runner's child starts as /bin/sh entrypoint.sh and becomes R when the script execs
        wait_for(lambda: os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "R", timeout=30)
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        assert any(arg.endswith(b"entrypoint.R") for arg in cmdline) and b"train" in cmdline
    finally:
        job.stop()


def test_identical_code_is_stored_once(shell, local_root):
    for _ in range(2):
        _, error = run_cell(shell, "r_train", "--name same", 'cat("same\\n")')
        assert error is None
    stored = os.listdir(local_root / "sourcedir")
    assert len(stored) == 1
    assert len(os.listdir(local_root / "jobs")) == 2


def test_extra_files_and_source_dir_are_packaged(shell, tmp_path):
    src = tmp_path / "src"
    (src / "R").mkdir(parents=True)
    (src / "R" / "utils.R").write_text("double_it <- function(x) 2 * x\n")
    extra = tmp_path / "lookup.csv"
    extra.write_text("a,b\n1,2\n")
    code = 'source("R/utils.R")\ncat("doubled", double_it(21), "\\n")\nprint(read.csv("lookup.csv")$b)\n'
    _, error = run_cell(shell, "r_processing", f"--source-dir {src} --file {extra} --as p", code)
    assert error is None
    logs = shell.user_ns["p"].logs()
    assert "doubled 42" in logs and "[1] 2" in logs


def test_environment_variables_reach_r(shell):
    _, error = run_cell(shell, "r_processing", "--env GREETING=hallo --env EMPTY= --as p",
                        'cat(Sys.getenv("GREETING"), nchar(Sys.getenv("EMPTY")), "\\n")')
    assert error is None
    assert "hallo 0" in shell.user_ns["p"].logs()


def test_magic_help_lists_options(shell):
    from sm_r_magic.magics import RMagics

    doc = RMagics.r_train.__doc__
    for option in ("--channel", "--hp", "--hyperparameters", "--backend", "--async", "--dry-run", "--as"):
        assert option in doc
    assert "--input" in RMagics.r_processing.__doc__ and "--output" in RMagics.r_processing.__doc__


def test_config_and_environment(shell, monkeypatch):
    from sm_r_magic import config

    shell.run_line_magic("config", 'RMagic.instance_type = "ml.c5.2xlarge"')
    assert config.current().instance_type == "ml.c5.2xlarge"
    monkeypatch.setenv("SM_R_MAGIC_BACKEND", "sagemaker")
    monkeypatch.setenv("SM_R_MAGIC_MAX_RUNTIME", "60")
    fresh = config.RMagic()
    assert fresh.backend == "sagemaker" and fresh.max_runtime == 60


def test_bad_environment_value_is_ignored_with_one_line(shell, monkeypatch, capsys):
    """A typo in the environment must not keep the magics from loading."""
    monkeypatch.setenv("SM_R_MAGIC_BACKEND", "bogus")
    monkeypatch.setenv("SM_R_MAGIC_MAX_RUNTIME", "an hour")
    shell.run_line_magic("reload_ext", "sm_r_magic")
    err = capsys.readouterr().err
    assert "ignoring SM_R_MAGIC_BACKEND='bogus'" in err and "using RMagic.backend = 'local'" in err
    assert "ignoring SM_R_MAGIC_MAX_RUNTIME='an hour'" in err
    assert "Traceback" not in err
    assert "r_train" in shell.magics_manager.magics["cell"]
    from sm_r_magic import config

    assert config.current().backend == "local" and config.current().max_runtime == 86400


