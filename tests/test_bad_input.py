"""Bad input: one line saying what to do, no traceback, and nothing created or uploaded."""

import os

import pytest
from IPython.core.error import UsageError

from .conftest import run_cell


def usage_error(shell, magic, line, cell, capsys):
    result, error = run_cell(shell, magic, line, cell)
    assert isinstance(error, UsageError), error
    message = str(error)
    assert "\n" not in message and message
    assert "Traceback" not in capsys.readouterr().out
    return message


@pytest.mark.parametrize("magic,line,cell,expected", [
    ("r_train", "", "   \n", "the cell has no R code"),
    ("r_train", "--no-such-option 1", "x <- 1", "unrecognized arguments: --no-such-option"),
    ("r_processing", "--input raw", "x <- 1", "malformed --input 'raw': expected --input NAME=URI"),
    ("r_processing", "--input =data.csv", "x <- 1", "malformed --input"),
    ("r_train", "--channel train", "x <- 1", "malformed --channel 'train'"),
    ("r_train", "--channel 'my channel=x'", "x <- 1", "may only hold letters"),
    ("r_train", "--hp alpha", "x <- 1", "malformed --hp 'alpha': expected --hp NAME=VALUE"),
    ("r_train", "--hp alpha=1 --hp alpha=2", "x <- 1", "--hp alpha is given twice"),
    ("r_train", "--hyperparameters '{oops'", "x <- 1", "--hyperparameters is not valid JSON"),
    ("r_train", "--hp sagemaker_program=x.R", "x <- 1", "reserved"),
    ("r_train", "--channel train=does/not/exist.csv", "x <- 1", "does/not/exist.csv does not exist"),
    ("r_processing", "--input raw=/nope/data.csv", "x <- 1", "/nope/data.csv does not exist"),
    ("r_train", "--name bad_name!", "x <- 1", "invalid --name 'bad_name!'"),
    ("r_train", "--name=-leading", "x <- 1", "invalid --name"),
    ("r_train", "--name " + "a" * 50, "x <- 1", "at most 42"),
    ("r_train", "--as 1abc", "x <- 1", "not a Python variable name"),
    ("r_train", "--instance-count 0", "x <- 1", "at least 1"),
    ("r_train", "--max-run -5", "x <- 1", "--max-run -5: give a whole number of at least 1"),
    ("r_processing", "--max-run 0", "x <- 1", "--max-run 0: give a whole number of at least 1"),
    ("r_train", "--volume-size 0", "x <- 1", "--volume-size 0: give a whole number of at least 1"),
    ("r_train", "--max-wait 100", "x <- 1", "--max-wait goes with --spot"),
    ("r_train", "--env 1BAD=x", "x <- 1", "malformed --env"),
    ("r_train", "--backend nowhere", "x <- 1", "invalid choice: 'nowhere'"),
    ("r_train", "--file /nope/helpers.R", "x <- 1", "--file '/nope/helpers.R' does not exist"),
    ("r_train", "--source-dir /nope", "x <- 1", "is not a folder"),
    ("r_train", "--packages 'glm net'", "x <- 1", "not an R package name"),
    ("r_train", "--metric rmse=nogroup", "x <- 1", "needs a group"),
    ("r_train", "--hp a=\"unclosed", "x <- 1", "check the quotes"),
    ("r_train", "--file .", "x <- 1", "--file '.' is a folder: give a file"),
    ("r_processing", "--output a=out/x --output b=out/x/", "x <- 1", "--output a and --output b both go to"),
    ("r_processing", "--output a=file://o --output b=o", "x <- 1", "--output a and --output b both go to"),
    ("r_train", "--name print", "x <- 1", "--name print would store the handle in `print`, which is a Python builtin"),
    ("r_train", "--name class", "x <- 1", "which is a Python keyword: add --as VAR"),
])
def test_bad_option_is_one_line_and_creates_nothing(shell, local_root, capsys, magic, line, cell, expected):
    message = usage_error(shell, magic, line, cell, capsys)
    assert expected in message
    assert not local_root.exists()


def test_r_parse_error_reports_r_message_and_line(shell, local_root, capsys, r_available):
    message = usage_error(shell, "r_train", "", "x <- 1\ny <- x +* 2\n", capsys)
    assert message.startswith("R code does not parse: line 2")
    assert "unexpected '*'" in message and "y <- x +* 2" in message
    assert not local_root.exists()


def test_unclosed_r_code(shell, local_root, capsys, r_available):
    message = usage_error(shell, "r_processing", "", "f <- function(x) {\n  x + 1\n", capsys)
    assert "R code does not parse" in message and "unexpected end of input" in message


def test_r_not_installed_says_what_to_do(shell, local_root, capsys):
    shell.run_line_magic("config", 'RMagic.rscript = "/nonexistent/Rscript"')
    message = usage_error(shell, "r_train", "", "x <- 1", capsys)
    assert "R is not installed" in message
    assert "apt-get install r-base-core" in message and "--backend docker" in message
    assert not local_root.exists()


def test_unwritable_local_root_is_one_line(shell, tmp_path, capsys, monkeypatch, r_available):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    shell.run_line_magic("config", f'RMagic.local_root = "{blocker}/sm-root"')
    message = usage_error(shell, "r_train", "", "x <- 1", capsys)
    assert f"cannot keep local jobs under {blocker}/sm-root" in message and "RMagic.local_root" in message
    assert blocker.read_text() == "not a folder"


def test_input_name_code_is_reserved(shell, local_root, capsys, mtcars_csv):
    message = usage_error(shell, "r_processing", f"--input code={mtcars_csv}", "x <- 1", capsys)
    assert "reserved" in message
    assert not local_root.exists()


def test_lone_surrogate_in_the_cell_is_one_line(shell, local_root, capsys):
    message = usage_error(shell, "r_train", "", "x <- 1\ny <- 'caf\udce9'\n", capsys)
    assert message.startswith("the cell has a character that is not valid Unicode") and "line 2, column 10" in message
    assert not local_root.exists()


def test_a_file_that_is_not_utf8_fails_before_the_job(shell, local_root, tmp_path, capsys):
    helpers = tmp_path / "helpers.R"
    helpers.write_bytes('greet <- function() cat("\u00e9t\u00e9\\n")\n'.encode("latin-1"))
    message = usage_error(shell, "r_train", f"--file {helpers}", 'source("helpers.R")\ngreet()\n', capsys)
    assert "is not UTF-8 text (byte 0xe9 on line 1)" in message and "save it as UTF-8" in message
    assert not local_root.exists()


@pytest.mark.parametrize("root", ["/proc/sm-r-magic", "/sys/sm-r-magic", "/proc/self/sm-r-magic"])
def test_local_root_in_a_kernel_filesystem_is_one_line(shell, capsys, root, r_available):
    shell.run_line_magic("config", f'RMagic.local_root = "{root}"')
    message = usage_error(shell, "r_train", "", "x <- 1", capsys)
    assert message.startswith(f"cannot keep local jobs under {root}") and "RMagic.local_root" in message


def test_s3_input_without_credentials_fails_before_a_job_exists(shell, local_root, tmp_path, capsys, monkeypatch):
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    message = usage_error(shell, "r_processing", "--input raw=s3://bucket/raw.csv", "x <- 1", capsys)
    assert message.startswith("--input raw s3://bucket/raw.csv: no AWS credentials found")
    message = usage_error(shell, "r_processing", "--output out=s3://bucket/out/", "x <- 1", capsys)
    assert message.startswith("--output out s3://bucket/out/: no AWS credentials found")
    assert not local_root.exists()


def test_name_binds_only_a_free_variable(shell, local_root, capsys, r_available):
    import pandas as pd

    test_df = pd.DataFrame({"x": [1, 2]})
    shell.user_ns["test_df"] = test_df
    message = usage_error(shell, "r_train", "--name test-df", "x <- 1", capsys)
    assert "would store the handle in `test_df`, which already holds a DataFrame" in message
    assert "--as VAR" in message and shell.user_ns["test_df"] is test_df
    assert not local_root.exists()  # refused before anything ran

    _, error = run_cell(shell, "r_train", "--name test-df --as test_job", "x <- 1")
    assert error is None and shell.user_ns["test_df"] is test_df
    assert shell.user_ns["test_job"].name.startswith("test-df-")
    _, error = run_cell(shell, "r_train", "--name fit", "x <- 1")
    first = shell.user_ns["fit"]
    _, error = run_cell(shell, "r_train", "--name fit", "x <- 2")  # a handle of ours may be replaced
    assert error is None and shell.user_ns["fit"].name != first.name
    _, error = run_cell(shell, "r_train", "--name test-df --dry-run", "x <- 1")  # binds nothing: fine
    assert error is None and shell.user_ns["test_df"] is test_df


def test_deploy_without_code_says_the_training_code_has_none(shell, local_root, tmp_path, capsys, r_available):
    train = 'saveRDS(lm(mpg ~ wt, mtcars), file.path(sm_model_dir(), "model.rds"))\n'
    _, error = run_cell(shell, "r_train", "--name lm --as job", train)
    assert error is None
    result = shell.run_cell("%r_deploy --model {job}")
    message = str(result.error_in_exec)
    assert isinstance(result.error_in_exec, UsageError) and "\n" not in message
    job = shell.user_ns["job"]
    assert message.startswith(f"--model {job.name}: its training code (train.R) has no deploy.R or inference.R")
    assert "model_fn(model_dir) in a %%r_deploy cell" in message
    notes = tmp_path / "notes.txt"
    notes.write_text("no code here\n")
    result = shell.run_cell(f"%r_deploy --model {{job}} --file {notes}")
    assert isinstance(result.error_in_exec, UsageError) and "neither is there" in str(result.error_in_exec)
    assert not (local_root / "endpoints").exists()  # no endpoint was created


def test_attach_an_endpoint_by_its_base_name(shell, local_root, capsys, r_available):
    train = 'saveRDS(lm(mpg ~ wt, mtcars), file.path(sm_model_dir(), "model.rds"))\n'
    assert run_cell(shell, "r_train", "--as job", train)[1] is None
    serve = 'model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))\n'
    assert run_cell(shell, "r_deploy", "--model {job} --name base-ep --as ep", serve)[1] is None
    endpoint = shell.user_ns["ep"]
    try:
        attached = shell.run_line_magic("r_attach", "base-ep --as again")
        assert attached.endpoint_name == endpoint.endpoint_name and shell.user_ns["again"] is attached
        assert attached.status == "InService"
    finally:
        endpoint.delete()
    message = str(shell.run_cell("%r_attach base-ep").error_in_exec)
    assert "no local job named base-ep (nor endpoint)" in message  # a deleted endpoint is not attached again
