"""This machine's R: finding Rscript and checking R code with R's own parser before packaging it."""

import os
import re
import shutil
import subprocess
import tempfile

from . import rparser, warm_processes
from .errors import SmRMagicError

INSTALL_HINT = ("install R (Debian/Ubuntu: sudo apt-get install r-base-core r-cran-jsonlite) "
                "or run the cell with --backend docker or --backend sagemaker")

_PARSE_CHECK = r"""
f <- commandArgs(TRUE)[1]
res <- tryCatch({ parse(text = readLines(f, warn = FALSE, encoding = "UTF-8"), keep.source = FALSE); NULL },
                error = function(e) conditionMessage(e))
if (!is.null(res)) { cat(res); quit(status = 3) }
"""


def find_rscript(rscript="Rscript"):
    return shutil.which(rscript)


def require_rscript(rscript="Rscript"):
    path = find_rscript(rscript)
    if not path:
        raise SmRMagicError(f"R is not installed here ({rscript} not found): {INSTALL_HINT}")
    return path


def _describe_parse_error(message, lines):
    # R says e.g. "<text>:3:5: unexpected symbol\n2: ...\n3: x y\n       ^"
    match = re.match(r"<text>:(\d+):(\d+): ([^\n]*)", message)
    if not match:
        return message.strip().splitlines()[0] if message.strip() else "unknown parse error"
    line, column, what = int(match.group(1)), int(match.group(2)), match.group(3)
    source = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return f"line {line}, column {column}: {what}" + (f" in `{source}`" if source else "")


def check_syntax(code, rscript="Rscript"):
    """Raise SmRMagicError with R's message and line when `code` does not parse. R's warm parser answers
    (rparser.py); without one, a fresh Rscript does, with the same messages (base R only: parse() needs no other
    package, and R starts in a third of the time without the default ones)."""
    path = require_rscript(rscript)
    if _warm_check(code, path):
        return
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False, encoding="utf-8") as fh:
        fh.write(code)
    try:
        proc = subprocess.run([path, "--no-init-file", "-e", _PARSE_CHECK, fh.name], capture_output=True,
                              text=True, timeout=60, env=dict(os.environ, R_DEFAULT_PACKAGES="NULL"))
    finally:
        os.unlink(fh.name)
    if proc.returncode == 3:
        raise SmRMagicError("R code does not parse: " + _describe_parse_error(proc.stdout, code.splitlines()))
    if proc.returncode != 0:
        raise SmRMagicError(f"could not run {path} to check the R code: {proc.stderr.strip()[:300]}")


def _warm_check(code, path):
    """True when R's warm parser answered (raising SmRMagicError when the code does not parse); False when there
    is none to ask: the cold check runs."""
    try:
        message = rparser.check(code, path)
    except rparser.Unavailable:
        return False
    if message:
        raise SmRMagicError("R code does not parse: " + _describe_parse_error(message, code.splitlines()))
    return True


def start_warm_parser(rscript="Rscript"):
    """Start R's warm parser in the background; returns at once (nothing happens without R, or when warm
    processes are off)."""
    path = find_rscript(rscript)
    if path and warm_processes.enabled():
        rparser.start(path)
