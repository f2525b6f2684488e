"""A warm R behind every cell, with real R: the syntax check asks a long-lived parser, and local jobs start in
pre-started single-use runners whose R is already up. Whatever runs warm must behave as it would cold: the same
parse messages, the same environment, logs, exit codes, failure files and stop behaviour; and warm processes are
ended by whoever owns them, also when that owner is killed (conftest.py checks that none is left at the end)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from sm_r_magic import api, rparser, rtools, warm_processes
from sm_r_magic.backends.processes import pid_alive
from sm_r_magic.backends.warm_pool import POOL
from sm_r_magic.errors import SmRMagicError

from .support.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def state_of(job):
    with open(os.path.join(job.local_folder, "state.json")) as fh:
        return json.load(fh)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


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


@pytest.fixture
def warm(settings, local_root, r_available):
    """Settings with warm processes on and both kinds of runner waiting (the local root exists, as it does
    after a first job)."""
    settings.warm_processes = True
    local_root.mkdir(parents=True, exist_ok=True)
    from sm_r_magic.backends import get_backend

    get_backend("local", settings).launcher.prestart()
    for kind in ("training", "processing"):
        wait_for(lambda: POOL.ready(kind), what=f"a warm {kind} runner")
    return settings


def ready_runner(kind):
    """(runner pid, its R's pid) of the waiting runner of this kind."""
    runner = wait_for(lambda: POOL.ready(kind), what=f"a warm {kind} runner").process().pid
    return runner, wait_for(lambda: children(runner), what="its R")[0]


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


def test_after_shutdown_the_check_runs_cold_and_starts_nothing(settings, r_available, cold_check, monkeypatch):
    """Once this process is exiting (warm_processes.shutdown began), no warm process starts: a syntax check
    asked then is answered by the cold check, with the same message."""
    rparser.stop()
    monkeypatch.setattr(warm_processes, "_closed", True)  # what shutdown() sets, without ending the session's
    with pytest.raises(SmRMagicError, match=r"^R code does not parse: line 1, column 3: unexpected symbol"):
        rtools.check_syntax("x y", r_available)
    assert len(cold_check) == 1 and warm_processes.owned("parser") == []
    rparser.stop()  # the broken parser of the closed state: the next check starts a real one


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


def test_load_ext_starts_the_parser_in_the_background(r_available):
    """%load_ext returns before R is up; the parser it started answers the first check."""
    script = textwrap.dedent("""
        import sys
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        ip.run_line_magic("load_ext", "sm_r_magic")
        print(sorted(set(sys.modules) & {"boto3", "botocore", "ipywidgets", "pandas"}))
        from sm_r_magic import rtools, warm_processes, rparser
        rtools.check_syntax("x <- 1", rtools.find_rscript())
        print([p.pid for p in warm_processes.owned("parser")])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=REPO)).stdout.splitlines()
    assert out[0] == "[]"
    assert len(json.loads(out[1])) == 1


# -- local jobs in warm runners -------------------------------------------------------------------------------

def test_a_local_job_runs_in_the_prestarted_runner_and_the_pool_is_refilled(warm):
    runner, r_pid = ready_runner("training")
    job = api.train('cat("hello from a warm R\\n")', wait=False, progress="none")
    job.wait(progress="none")
    assert job.status == "Completed", job.failure_reason
    assert "hello from a warm R" in job.logs()
    state = state_of(job)
    assert (state["runner_pid"], state["child_pid"]) == (runner, r_pid)  # R had started before the job existed
    assert os.path.exists(job.model_data)
    refill, _ = ready_runner("training")
    assert refill != runner
    assert not pid_alive(runner) and not pid_alive(r_pid)  # single use


ENV_PROBE = r'''
e <- Sys.getenv()
cat(sprintf("ENV %s=%s\n", names(e), e), sep = "")
cat("ARGS", commandArgs(), "\n")
cat("SEARCH", search(), "\n")
cat("NAMESPACES", sort(loadedNamespaces()), "\n")
cat("GLOBALS", ls(globalenv(), all.names = TRUE), "\n")
cat("WD", getwd(), "\n")
cat("STDIN", length(readLines(file("stdin"))), "\n")
cat("OPTIONS", getOption("warn"), getOption("keep.source"), getOption("encoding"), "\n")
'''

# Differences a warm job may show: values each R process makes up for itself at start-up
PER_PROCESS = {"R_SESSION_TMPDIR"}


def probe(kind, **kwargs):
    run = api.train if kind == "training" else api.processing
    job = run(ENV_PROBE, wait=True, progress="none", env={"GREETING": "hallo"}, **kwargs)
    assert job.status == "Completed", job.failure_reason
    lines = job.logs().replace(job.local_folder, "<FOLDER>").replace(job.name, "<NAME>").splitlines()
    env = dict(line[4:].split("=", 1) for line in lines if line.startswith("ENV "))
    rest = [line.replace(env["R_SESSION_TMPDIR"], "<TMP>") for line in lines if not line.startswith("ENV ")]
    return job, env, rest


@pytest.mark.parametrize("kind", ["training", "processing"])
def test_a_warm_job_sees_what_a_cold_job_sees(warm, kind):
    """The same environment (Sys.getenv()), command line, attached packages, loaded namespaces, global objects,
    working directory, stdin and options; only what R makes up per process differs."""
    warm.warm_processes = False
    cold_job, cold_env, cold_rest = probe(kind)
    warm.warm_processes = True
    runner, _ = ready_runner(kind)
    warm_job, warm_env, warm_rest = probe(kind)
    assert state_of(warm_job)["runner_pid"] == runner and state_of(cold_job)["runner_pid"] != runner
    differing = {k for k in set(cold_env) | set(warm_env) if cold_env.get(k) != warm_env.get(k)}
    assert differing == PER_PROCESS
    assert warm_rest == cold_rest
    assert warm_env["GREETING"] == "hallo" and warm_env["PWD"] == "<FOLDER>"
    assert not any(k.startswith("SM_R_MAGIC_WARM") for k in warm_env)


FAILING = 'f <- function(x) stop("boom: ", x)\ncat("before\\n")\nf(42)\n'


def test_a_warm_failure_has_the_same_reason_exit_code_failure_file_and_logs(warm):
    def run():
        job = api.train(FAILING, wait=True, progress="none", raise_on_failure=False)
        failure = open(os.path.join(job.local_folder, "opt", "ml", "output", "failure")).read()
        logs = job.logs().replace(job.name, "<NAME>")
        return job, (job.status, job.failure_reason, state_of(job)["exit_code"], failure, logs)

    warm.warm_processes = False
    cold_job, cold = run()
    warm.warm_processes = True
    runner, _ = ready_runner("training")
    warm_job, warm_outcome = run()
    assert state_of(warm_job)["runner_pid"] == runner
    assert warm_outcome == cold
    assert cold[0] == "Failed" and cold[2] == 1 and "Error in f(42): boom: 42" in cold[1]


def test_stopping_a_warm_job_sends_r_sigterm_and_ends_it_stopped(warm):
    runner, r_pid = ready_runner("training")
    job = api.train("Sys.sleep(60)", wait=False, progress="none")
    wait_for(lambda: job.secondary_status == "Training", what="the job running")
    assert state_of(job)["child_pid"] == r_pid
    job.stop()
    job.wait(progress="none", timeout=30)
    assert job.status == "Stopped"
    assert state_of(job)["exit_code"] == -signal.SIGTERM  # R itself ended on the SIGTERM
    assert not pid_alive(runner) and not pid_alive(r_pid)


@pytest.mark.parametrize("warm_processes", [False, True], ids=["cold", "warm"])
def test_stop_right_after_submission_ends_stopped(settings, local_root, r_available, warm_processes):
    """The runner gets SIGTERM before it could install its handler (cold: it starts with SIGTERM blocked;
    warm: it may not have read its job yet): the job ends Stopped, not Failed."""
    settings.warm_processes = warm_processes
    if warm_processes:
        local_root.mkdir(parents=True, exist_ok=True)
        from sm_r_magic.backends import get_backend

        get_backend("local", settings).launcher.prestart()
        ready_runner("training")
    for _ in range(3):
        job = api.train("Sys.sleep(60)", wait=False, progress="none")
        job.stop()
        job.wait(progress="none", timeout=60)
        assert job.status == "Stopped", job.failure_reason
        assert job.failure_reason == "Stopped by the user"


@pytest.mark.parametrize("variable,value,probe_code,expected", [
    ("R_DEFAULT_PACKAGES", "base", 'cat("stats attached:", "package:stats" %in% search(), "\\n")',
     "stats attached: FALSE"),
    # LC_ALL, not LANG: a Python started without a locale sets LC_CTYPE=C.UTF-8 for its children (PEP 538)
    ("LC_ALL", "C", 'cat("utf8:", l10n_info()[["UTF-8"]], "\\n")', "utf8: FALSE"),
    ("OMP_NUM_THREADS", "1", 'cat("omp:", Sys.getenv("OMP_NUM_THREADS"), "\\n")', "omp: 1"),
])
def test_start_up_variables_take_the_cold_path_and_take_effect(warm, variable, value, probe_code, expected):
    runner, r_pid = ready_runner("training")
    job = api.train(probe_code, env={variable: value}, wait=True, progress="none")
    assert job.status == "Completed", job.failure_reason
    assert expected in job.logs()
    assert state_of(job)["runner_pid"] != runner
    assert POOL.ready("training").process().pid == runner  # it waits for the next job
    after = api.train('cat("warm again\\n")', wait=True, progress="none")
    assert state_of(after)["runner_pid"] == runner and "warm again" in after.logs()


def test_container_arguments_take_the_cold_path(warm):
    from sm_r_magic.backends import get_backend

    first = api.processing('cat("args:", commandArgs(TRUE), "\\n")', wait=True, progress="none")
    request = first.describe()
    request = {k: request[k] for k in api.processing("x", dry_run=True)}
    request["ProcessingJobName"] = first.name + "-args"
    request["AppSpecification"]["ContainerArguments"] = ["--extra", "1"]
    runner, _ = ready_runner("processing")
    job = get_backend("local", warm).submit("processing", request)
    job.wait(progress="none")
    assert job.status == "Completed", job.failure_reason
    assert "args: process --extra 1" in job.logs()
    assert state_of(job)["runner_pid"] != runner
    assert POOL.ready("processing").process().pid == runner


def test_warm_processes_off_starts_none(settings, local_root, r_available, monkeypatch):
    monkeypatch.setenv("SM_R_MAGIC_WARM_PROCESSES", "false")
    from sm_r_magic import config

    fresh = config.RMagic()
    assert fresh.warm_processes is False
    monkeypatch.setattr(config, "_current", fresh)
    POOL.clear()
    rparser.stop()
    before = {p.pid for p in warm_processes.owned()}
    api.warm_up(fresh)
    job = api.train('cat("cold\\n")', wait=True, progress="none")
    assert job.status == "Completed" and "cold" in job.logs()
    assert {p.pid for p in warm_processes.owned()} <= before
    assert not os.path.exists(local_root / "warm")


def test_a_kernel_that_inherited_warm_marks_does_not_pass_them_to_jobs(settings, local_root, r_available, monkeypatch):
    """A kernel started from inside a warm process (its marks in the environment) runs jobs normally: a cold R
    given SM_R_MAGIC_WARM would wait for a hand-off that never comes."""
    monkeypatch.setenv("SM_R_MAGIC_WARM", "training")
    monkeypatch.setenv("SM_R_MAGIC_WARM_OWNER", "1")
    settings.warm_processes = False
    job = api.train('cat("ran\\n")', wait=True, progress="none")
    assert job.status == "Completed", job.failure_reason
    assert "ran" in job.logs()


def test_an_idle_runner_whose_r_died_is_replaced_and_the_job_runs_cold(warm):
    runner, r_pid = ready_runner("training")
    os.kill(r_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(runner), what="the runner ending with its R")
    job = api.train('cat("still runs\\n")', wait=True, progress="none")
    assert job.status == "Completed" and "still runs" in job.logs()
    assert state_of(job)["runner_pid"] != runner
    assert ready_runner("training")[0] not in (runner, state_of(job)["runner_pid"])


def test_a_pool_folder_removed_under_an_idle_runner_costs_the_job_nothing(warm, local_root):
    import shutil

    runner, r_pid = ready_runner("training")
    shutil.rmtree(local_root / "warm")
    job = api.train('cat("logged\\n")', wait=True, progress="none")
    assert job.status == "Completed" and "logged" in job.logs()
    assert state_of(job)["runner_pid"] == runner and state_of(job)["child_pid"] != r_pid  # its R started cold


# -- ownership: a killed kernel leaves nothing warm behind, and its jobs keep running -------------------------

KERNEL_SETUP = """
%load_ext sm_r_magic
import json, time
from sm_r_magic import api, rtools, warm_processes
from sm_r_magic.backends.warm_pool import POOL
rtools.check_syntax("x <- 1", rtools.find_rscript())
deadline = time.monotonic() + 60
while not (POOL.ready("training") and POOL.ready("processing")) and time.monotonic() < deadline:
    time.sleep(0.02)
"""

KERNEL_JOB = """
job = api.train("Sys.sleep(120)", wait=False, progress="none")
while not (POOL.ready("training") and job.secondary_status == "Training") and time.monotonic() < deadline:
    time.sleep(0.02)
"""


@contextlib.contextmanager
def jupyter_kernel(root, with_job=False):
    """A real IPython kernel (jupyter_client, this venv's python3 kernel) that loaded the extension and has its
    warm processes up -> (kernel pid, warm pids with the runners' R, the job folder or None). Killed by the test;
    shut down here in any case."""
    from jupyter_client import KernelManager

    os.makedirs(root, exist_ok=True)  # a local root exists: %load_ext prestarts the runners
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=dict(os.environ, PYTHONPATH=REPO, SM_R_MAGIC_LOCAL_ROOT=str(root)), cwd=str(root))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        out = []
        code = KERNEL_SETUP + (KERNEL_JOB if with_job else "") + (
            'print(json.dumps({"warm": [p.pid for p in warm_processes.owned()], '
            '"job": job.local_folder if "job" in dir() else None}))')
        reply = kc.execute_interactive(code, timeout=120, output_hook=lambda msg: out.append(
            msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None)
        assert reply["content"]["status"] == "ok", reply["content"]
        report = json.loads("".join(out).strip().splitlines()[-1])
        warm = report["warm"] + [c for pid in report["warm"] for c in children(pid)]  # the runners' R too
        yield km.provisioner.process.pid, warm, report["job"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_sigkilled_kernel_leaves_no_warm_process(tmp_path, r_available):
    with jupyter_kernel(tmp_path / "root") as (kernel, warm, _):
        assert len(warm) == 5  # the parser, two runners, their two R
        assert all(pid_alive(pid) for pid in warm)
        os.kill(kernel, signal.SIGKILL)
        wait_for(lambda: not any(pid_alive(pid) for pid in warm), what="every warm process gone")
    assert not os.listdir(tmp_path / "root" / "warm")  # they removed their files


def test_a_job_handed_to_a_warm_runner_survives_the_kernel(settings, tmp_path, r_available):
    with jupyter_kernel(tmp_path / "root", with_job=True) as (kernel, warm, folder):
        with open(os.path.join(folder, "state.json")) as fh:
            state = json.load(fh)
        runner, r_pid = state["runner_pid"], state["child_pid"]
        assert runner not in warm and r_pid not in warm  # handed the job: no longer the kernel's to end
        try:
            os.kill(kernel, signal.SIGKILL)
            wait_for(lambda: not any(pid_alive(pid) for pid in warm), what="the idle warm processes gone")
            assert pid_alive(runner) and pid_alive(r_pid)  # the idle ones died of the kernel's end; it did not
            settings.local_root = str(tmp_path / "root")
            job = api.attach(os.path.basename(folder), backend="local")
            assert job.status == "InProgress"
            job.stop()
            job.wait(progress="none", timeout=30)
            assert job.status == "Stopped"
        finally:
            for pid in (runner, r_pid):
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
