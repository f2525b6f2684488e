"""A warm R behind every cell, with real R: the syntax check asks a long-lived parser. Whatever runs warm must
behave as it would cold (the same parse messages), and warm processes are ended by whoever owns them
(conftest.py checks that none is left at the end)."""

import os
import signal
import subprocess
import time

import pytest

from sm_r_magic import rtools, warm_processes
from sm_r_magic.errors import SmRMagicError


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what}: not reached in {timeout} s")


@pytest.fixture
def cold_check(monkeypatch):
    """Counts the cold checks (fresh Rscripts) rtools runs; the warm parser is a pipe, not subprocess.run."""
    calls = []
    real_run = subprocess.run

    def counting_run(argv, *args, **kwargs):
        calls.append(argv)
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(rtools.subprocess, "run", counting_run)
    return calls


# -- the syntax check ---------------------------------------------------------------------------------------

PARSE_CASES = [
    "x <- 1\n",
    "x <- 1\ny <- x +* 2\n",
    "f <- function(a) {\n  a + 1\n",
    "é <- 'ü'\nprint(é é)\n",
    "a <- 1\r\nb c\r\n",
    "",
    "`unclosed <- 1\n",
    "x <- '\\q'\n",
]


def check_outcome(code, rscript):
    try:
        rtools.check_syntax(code, rscript)
        return "parses"
    except SmRMagicError as exc:
        return str(exc)


def test_warm_parser_gives_the_cold_checks_messages(settings, r_available, cold_check):
    settings.warm_processes = False
    cold = [check_outcome(code, r_available) for code in PARSE_CASES]
    assert len(cold_check) == len(PARSE_CASES)
    assert cold[0] == "parses" and cold[1].startswith("R code does not parse: line 2, column 9: unexpected '*'")
    settings.warm_processes = True
    cold_check.clear()
    warm = [check_outcome(code, r_available) for code in PARSE_CASES]
    assert warm == cold
    assert cold_check == []  # every answer came from the warm parser
    assert len(warm_processes.owned("parser")) == 1


def test_warm_parser_only_parses_and_is_reused(settings, r_available, tmp_path):
    marker = tmp_path / "evaluated"
    code = f'file.create("{marker}")\nsystem("touch {marker}")\n'
    for _ in range(3):
        rtools.check_syntax(code, r_available)
    assert not marker.exists()
    parsers = warm_processes.owned("parser")
    assert len(parsers) == 1 and parsers[0].poll() is None
    with open(f"/proc/{parsers[0].pid}/environ", "rb") as fh:
        assert b"R_DEFAULT_PACKAGES=NULL" in fh.read().split(b"\0")  # base R only: it starts in a third of the time


def test_a_dead_parser_falls_back_to_the_cold_check_and_is_replaced(settings, r_available, cold_check):
    rtools.check_syntax("x <- 1", r_available)
    parser = warm_processes.owned("parser")[0]
    os.kill(parser.pid, signal.SIGKILL)
    parser.wait(timeout=10)
    with pytest.raises(SmRMagicError, match=r"^R code does not parse: line 1, column 3: unexpected symbol in `x y`$"):
        rtools.check_syntax("x y", r_available)
    assert len(cold_check) == 1  # the cold check answered
    replacement = wait_for(lambda: [p for p in warm_processes.owned("parser") if p.pid != parser.pid],
                           what="a new parser")
    cold_check.clear()
    with pytest.raises(SmRMagicError, match="unexpected symbol"):
        rtools.check_syntax("x y", r_available)
    assert cold_check == [] and replacement[0].poll() is None


def test_broken_r_gives_the_same_one_line_error(settings, tmp_path, cold_check):
    broken = tmp_path / "Rscript"
    broken.write_text("#!/bin/sh\necho 'R: libRblas.so: cannot open shared object file' >&2\nexit 127\n")
    broken.chmod(0o755)
    settings.warm_processes = False
    with pytest.raises(SmRMagicError) as cold:
        rtools.check_syntax("x <- 1", str(broken))
    settings.warm_processes = True
    with pytest.raises(SmRMagicError) as warm:
        rtools.check_syntax("x <- 1", str(broken))
    assert str(warm.value) == str(cold.value)
    assert str(cold.value).startswith(f"could not run {broken} to check the R code: R: libRblas.so")


def test_missing_r_gives_the_same_one_line_error(settings):
    with pytest.raises(SmRMagicError, match=r"^R is not installed here \(/nonexistent/Rscript not found\): install R"):
        rtools.check_syntax("x <- 1", "/nonexistent/Rscript")
