"""Shared fixtures: an IPython shell with the extension loaded, real R, an isolated local root."""

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from .support.moto_server import fast, moto_server, sm  # noqa: F401  (fixtures for every test module)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every process this test session starts inherits this mark: warm processes left behind are found by it, also
# those of kernels the tests started as subprocesses.
TEST_RUN = os.environ.setdefault("SM_R_MAGIC_TEST_RUN", uuid.uuid4().hex)


def warm_processes_of_this_run():
    """{pid: command line} of the live warm processes (R parsers, warm job runners and their R) that carry this
    session's mark."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = set(fh.read().split(b"\0"))
            with open(f"/proc/{entry}/stat") as fh:
                zombie = fh.read().rsplit(")", 1)[1].split()[0] == "Z"
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        marked = any(item.startswith(b"SM_R_MAGIC_WARM=") for item in environ)
        if marked and f"SM_R_MAGIC_TEST_RUN={TEST_RUN}".encode() in environ and not zombie:
            found[int(entry)] = cmdline[:200]
    return found


@pytest.fixture(scope="session", autouse=True)
def own_cache_folder(tmp_path_factory):
    """sm-r-magic's cache files (limits.py's) go to this session's folder, not the user's ~/.cache."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session", autouse=True)
def no_warm_process_left_behind():
    """At the end of the session this process ends its warm processes as it would at exit; then none of this
    session's may be alive (a warm runner that took a job must have finished it: tests end their jobs)."""
    yield
    from sm_r_magic import rparser, warm_processes
    from sm_r_magic.backends.warm_pool import POOL

    POOL.clear()
    rparser.stop()
    warm_processes.shutdown()
    deadline = time.monotonic() + 30
    while warm_processes_of_this_run() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = warm_processes_of_this_run()
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"warm processes left behind: {left}"


@pytest.fixture(scope="session")
def r_available():
    if not shutil.which("Rscript"):
        pytest.skip("R is not installed (make test installs r-base-core)")
    return shutil.which("Rscript")


@pytest.fixture(autouse=True)
def fresh_session():
    """Each test starts with an empty session (what %r_jobs, deploy defaults and the kernel-exit clean-up
    see), as a new kernel does; endpoints a test left in it are deleted afterwards, not at pytest's exit."""
    from sm_r_magic.jobs import SESSION

    SESSION.jobs, SESSION.endpoints = [], []
    yield SESSION
    for predictor in list(SESSION.endpoints):
        try:
            if predictor.status != "Deleted":
                predictor.delete()
        except Exception:  # its backend is gone (a stopped moto server): nothing left to delete
            pass
    SESSION.jobs, SESSION.endpoints = [], []


@pytest.fixture
def local_root(tmp_path, monkeypatch):
    """Every test gets its own artifact root, also for code that reads the environment."""
    root = tmp_path / "sm-r-magic-root"
    monkeypatch.setenv("SM_R_MAGIC_LOCAL_ROOT", str(root))
    return root


@pytest.fixture
def settings(local_root, monkeypatch):
    """Fresh settings in force for the plain Python API."""
    from sm_r_magic import config

    fresh = config.RMagic()
    monkeypatch.setattr(config, "_current", fresh)
    return fresh


@pytest.fixture
def shell(local_root, monkeypatch, tmp_path):
    """An InteractiveShell with the extension loaded, as a notebook user has it."""
    from IPython.testing.globalipapp import get_ipython, start_ipython

    from sm_r_magic import config

    ip = start_ipython() or get_ipython()
    monkeypatch.setattr(config, "_current", None)
    monkeypatch.chdir(tmp_path)
    ip.config.pop("RMagic", None)  # %config of an earlier test lives in the shell's config
    ip.run_line_magic("reload_ext", "sm_r_magic")
    yield ip
    ip.config.pop("RMagic", None)
    ip.reset(new_session=False)


@pytest.fixture
def mtcars_csv(tmp_path, r_available):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    subprocess.run([r_available, "-e", f'write.csv(mtcars, "{data}/mtcars.csv", row.names = FALSE)'], check=True)
    return data / "mtcars.csv"


def run_cell(shell, magic, line, cell):
    """Run a cell magic and return (result, error) the way a notebook would see them."""
    result = shell.run_cell(f"%%{magic} {line}\n{cell}")
    return result.result, result.error_in_exec or result.error_before_exec
