"""Running R from tests: what an expression prints, to compare with what a job or endpoint computed."""

import shutil
import subprocess


def r_output(expr, timeout=120):
    """What `expr` printed (Rscript --no-init-file -e); fails the test with R's stderr."""
    rscript = shutil.which("Rscript")
    if not rscript:
        raise AssertionError("R is not installed (make test installs r-base-core)")
    proc = subprocess.run([rscript, "--no-init-file", "-e", expr], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def r_tokens(expr):
    """The whitespace-separated values `expr` printed."""
    return r_output(expr).split()


def r_numbers(expr):
    """The numbers `expr` printed (with cat()), as floats."""
    return [float(v) for v in r_tokens(expr)]
