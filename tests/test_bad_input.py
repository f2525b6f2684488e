"""Bad input: one line saying what to do, no traceback, and nothing created or uploaded."""

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
