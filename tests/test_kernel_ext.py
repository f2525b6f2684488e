"""kernel_ext: `sm-r-magic install-kernel` (kernel spec and ipython_config.py) and the R package
kernel_ext/R/smrmagic, whose testthat suite runs here through Rscript so that `pytest` alone covers it."""

import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from sm_r_magic import cli, kernel_install

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R_PACKAGE = os.path.join(REPO, "kernel_ext", "R", "smrmagic")
BRIDGE_DIR = os.path.join(R_PACKAGE, "inst", "python")


def _kernel_dir(prefix, name="sm-r-magic"):
    return prefix / "share" / "jupyter" / "kernels" / name


def test_install_kernel_writes_a_spec_that_loads_the_extension(tmp_path, capsys):
    assert cli.main(["install-kernel", "--prefix", str(tmp_path), "--env", "SM_R_MAGIC_BACKEND=local"]) == 0
    spec = json.loads((_kernel_dir(tmp_path) / "kernel.json").read_text())
    assert spec["argv"] == [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                            "--ext", "sm_r_magic"]
    assert spec["language"] == "python"
    assert spec["display_name"] == kernel_install.DEFAULT_DISPLAY_NAME
    assert spec["env"] == {"SM_R_MAGIC_BACKEND": "local"}
    assert (_kernel_dir(tmp_path) / "logo-64x64.png").exists()
    assert "Installed kernel spec 'sm-r-magic'" in capsys.readouterr().out
    # installing again replaces the spec (idempotent), under another name and display name
    assert cli.main(["install-kernel", "--prefix", str(tmp_path), "--name", "r-jobs",
                     "--display-name", "R jobs"]) == 0
    assert json.loads((_kernel_dir(tmp_path, "r-jobs") / "kernel.json").read_text())["display_name"] == "R jobs"
    assert cli.main(["install-kernel", "--prefix", str(tmp_path)]) == 0
    assert "env" not in json.loads((_kernel_dir(tmp_path) / "kernel.json").read_text())


def test_install_kernel_bad_input_is_one_line(tmp_path, capsys):
    assert cli.main(["install-kernel", "--prefix", str(tmp_path), "--name", "bad name"]) == 2
    assert "a kernel name uses letters" in capsys.readouterr().err
    assert cli.main(["install-kernel", "--prefix", str(tmp_path), "--env", "NOEQUALS"]) == 2
    assert "expected --env KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["install-kernel", "--user", "--prefix", str(tmp_path)])  # mutually exclusive


@pytest.mark.slow
def test_installed_kernel_has_the_magics_without_load_ext(tmp_path, monkeypatch, r_available):
    """Start the installed spec with jupyter_client and run a tiny local training job in it."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    prefix = tmp_path / "prefix"
    kernel_install.install_kernel_spec("smr-test", prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    root = tmp_path / "root"
    env = dict(os.environ, SM_R_MAGIC_LOCAL_ROOT=str(root), SM_R_MAGIC_PROGRESS="text")
    km = KernelManager(kernel_name="smr-test", kernel_spec_manager=KernelSpecManager())
    assert km.kernel_spec.argv[-2:] == ["--ext", "sm_r_magic"]
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def run(code):
            out, errors = [], []

            def hook(msg):
                content = msg["content"]
                if msg["msg_type"] == "stream":
                    out.append(content["text"])
                elif msg["msg_type"] == "error":
                    errors.append("\n".join(content["traceback"]))

            reply = kc.execute_interactive(code, output_hook=hook, timeout=60)
            assert reply["content"]["status"] == "ok", errors
            return "".join(out)

        assert run("print('r_train' in get_ipython().magics_manager.magics['cell'])").strip() == "True"
        out = run('%%r_train --name hello\ncat("hi from R\\n")')
        assert "hi from R" in out
        assert run("print(hello.status, hello.kind)").strip() == "Completed training"
        assert os.path.isdir(root / "jobs")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_ipython_config_line_is_added_once(tmp_path, capsys):
    ipython_dir = tmp_path / "ipython"
    args = ["install-kernel", "--ipython-config", "--ipython-dir", str(ipython_dir)]
    assert cli.main(args) == 0
    assert "Added" in capsys.readouterr().out
    config = ipython_dir / "profile_default" / "ipython_config.py"
    first = config.read_text()
    assert first.startswith("c = get_config()")
    assert first.count(kernel_install.CONFIG_LINE) == 1
    assert cli.main(args) == 0
    assert "unchanged" in capsys.readouterr().out
    assert config.read_text() == first
    # a profile whose config already loads the extension by hand is left alone; others get the line appended
    other = ipython_dir / "profile_work" / "ipython_config.py"
    other.parent.mkdir(parents=True)
    other.write_text("c.InteractiveShellApp.extensions = ['autoreload', 'sm_r_magic']")
    assert kernel_install.add_to_ipython_config("work", str(ipython_dir))[1] is False
    other.write_text("c.InteractiveShellApp.exec_lines = ['import os']")
    assert kernel_install.add_to_ipython_config("work", str(ipython_dir))[1] is True
    assert other.read_text().endswith(f"\n{kernel_install.CONFIG_LINE}\n")


def test_ipython_config_loads_the_magics_in_a_new_session(tmp_path):
    ipython_dir = tmp_path / "ipython"
    kernel_install.add_to_ipython_config("default", str(ipython_dir))
    env = dict(os.environ, IPYTHONDIR=str(ipython_dir))
    result = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "-c",
         "print(sorted(m for m in get_ipython().magics_manager.magics['cell'] if m.startswith('r_')))"],
        env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "'r_processing'" in result.stdout and "'r_train'" in result.stdout


# -- the R package ----------------------------------------------------------------------------------------------

def _r_package_ready():
    if not shutil.which("Rscript"):
        pytest.skip("R is not installed (make test installs r-base-core)")
    check = subprocess.run(["Rscript", "-e", "for (p in c('reticulate', 'testthat', 'jsonlite')) "
                                            "if (!requireNamespace(p, quietly = TRUE)) quit(status = 3)"])
    if check.returncode == 3:
        pytest.skip("r-cran-reticulate, r-cran-testthat and r-cran-jsonlite are needed (make system-deps)")


@pytest.fixture(scope="module")
def r_library(tmp_path_factory):
    """The R package installed with R CMD INSTALL into a temporary library."""
    _r_package_ready()
    lib = tmp_path_factory.mktemp("rlib")
    result = subprocess.run(["R", "CMD", "INSTALL", "--no-test-load", f"--library={lib}", R_PACKAGE],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return lib


def test_r_package_installs(r_library):
    """R CMD INSTALL accepts DESCRIPTION/NAMESPACE and ships the addins and the Python bridge."""
    installed = r_library / "smrmagic"
    assert (installed / "rstudio" / "addins.dcf").exists()
    assert (installed / "python" / "smrmagic_bridge.py").exists()
    exports = subprocess.run(["Rscript", "-e", f"cat(sort(getNamespaceExports(loadNamespace('smrmagic', "
                                               f"lib.loc = '{r_library}'))), sep = '\\n')"],
                             capture_output=True, text=True, timeout=60)
    assert exports.returncode == 0, exports.stderr
    for name in ("sm_processing", "sm_train", "sm_deploy", "sm_attach", "sm_jobs", "sm_config", "sm_status",
                 "sm_logs", "sm_wait", "sm_stop", "sm_outputs", "sm_model_data", "sm_delete", "sm_addin_train",
                 "sm_pipeline", "sm_executions", "sm_models", "sm_approve"):
        assert name in exports.stdout.split(), name
    dcf = (installed / "rstudio" / "addins.dcf").read_text()
    for binding in ("sm_addin_processing", "sm_addin_train", "sm_addin_deploy"):
        assert f"Binding: {binding}\n" in dcf
    # every exported function has a help page (messages say "see ?sm_train")
    missing = subprocess.run(
        ["Rscript", "-e", f"lib <- '{r_library}'; exports <- getNamespaceExports(loadNamespace('smrmagic', "
                          "lib.loc = lib)); cat(exports[lengths(lapply(exports, function(n) utils::help(n, "
                          "package = 'smrmagic', lib.loc = lib))) == 0], sep = '\\n')"],
        capture_output=True, text=True, timeout=60)
    assert missing.returncode == 0, missing.stderr
    assert missing.stdout.split() == [], "exports without a help page"


def _sm_python_in_r(r_library, **env):
    """smrmagic::sm_python() in a new R process, with only the given Python choices in its environment."""
    environment = {k: v for k, v in os.environ.items() if k not in ("SM_R_MAGIC_PYTHON", "RETICULATE_PYTHON")}
    environment.update(env, R_LIBS=str(r_library))
    code = ('tryCatch({info <- smrmagic::sm_python(); cat("PYTHON:", info$python, "\\n")}, '
            'error = function(e) cat("CLASS:", class(e)[1], "\\nMESSAGE:", conditionMessage(e), "\\n"))')
    result = subprocess.run(["Rscript", "-e", code], env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_r_package_says_to_install_libpython_when_reticulate_cannot_load_python(r_library, tmp_path):
    """A fresh Debian 12 has python3 but not libpython3.11, the shared library reticulate loads: the R package
    says which package to install, as one sm_usage_error line. The Python here is made to look like that:
    sysconfig's LIBPL and LIBDIR (where reticulate looks for libpython3.X.so) point at an empty folder."""
    site = tmp_path / "site"
    site.mkdir()
    (tmp_path / "empty").mkdir()
    (site / "sitecustomize.py").write_text(
        "import sysconfig\n_get = sysconfig.get_config_var\n"
        f"sysconfig.get_config_var = lambda name: {str(tmp_path / 'empty')!r} if name in ('LIBPL', 'LIBDIR') "
        "else _get(name)\n")
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text(f"#!/bin/sh\nPYTHONPATH={site}${{PYTHONPATH:+:$PYTHONPATH}} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    library = "libpython%d.%d" % sys.version_info[:2]
    for variable in ("SM_R_MAGIC_PYTHON", "RETICULATE_PYTHON"):
        out = _sm_python_in_r(r_library, **{variable: str(python)})
        assert "CLASS: sm_usage_error" in out, out
        assert (f"MESSAGE: reticulate cannot load Python's shared library ({library}.so) for {python}: install it "
                f"(Debian/Ubuntu: sudo apt-get install {library}), or use a Python built with --enable-shared") in out


def test_r_package_finds_python_from_a_venv_folder_and_before_reticulate_python(r_library):
    """SM_R_MAGIC_PYTHON may name the virtual environment's folder, and it wins over a RETICULATE_PYTHON that
    names another Python (reticulate alone would ignore it and fail to import sm_r_magic)."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests do not run in a virtual environment")
    venv_python = os.path.join(sys.prefix, "bin", "python")
    other = shutil.which("python3", path="/usr/bin") or sys.base_exec_prefix + "/bin/python3"
    out = _sm_python_in_r(r_library, SM_R_MAGIC_PYTHON=sys.prefix, RETICULATE_PYTHON=other)
    assert f"PYTHON: {venv_python}" in out, out
    out = _sm_python_in_r(r_library, RETICULATE_PYTHON=venv_python)  # reticulate's own variable works too
    assert f"PYTHON: {venv_python}" in out, out
    out = _sm_python_in_r(r_library, SM_R_MAGIC_PYTHON=str(os.path.dirname(REPO)))
    assert "CLASS: sm_usage_error" in out and "is a folder without bin/python" in out, out


def test_r_package_reads_the_pth_files_that_reticulate_skips(r_library, tmp_path):
    """Debian's python3.11 under reticulate gets a virtual environment's site-packages on sys.path without its .pth
    files having run, and `pip install -e .` (what make install does) is a .pth file: the fresh-machine run failed
    with "No module named 'sm_r_magic'". The R package reads them once more and imports again."""
    debian_python = "/usr/bin/python3.11"
    if not os.path.exists(debian_python):
        pytest.skip("Debian's /usr/bin/python3.11 is not installed")
    venv = tmp_path / "venv"
    made = subprocess.run([debian_python, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"python3-venv is not installed: {made.stderr.strip()}")
    site_packages = venv / "lib" / "python3.11" / "site-packages"
    # what setuptools writes for an editable install: a .pth that puts a finder on sys.meta_path
    (site_packages / "sm_source_finder.py").write_text(
        "import importlib.machinery, sys\n"
        "class Finder:\n"
        "    @classmethod\n"
        "    def find_spec(cls, fullname, path=None, target=None):\n"
        "        if fullname == 'sm_r_magic':\n"
        f"            return importlib.machinery.PathFinder.find_spec(fullname, [{REPO!r}])\n"
        "def install():\n"
        "    sys.meta_path.append(Finder)\n")
    (site_packages / "sm_source.pth").write_text("import sm_source_finder; sm_source_finder.install()\n")
    code = (f'reticulate::use_python("{venv}/bin/python", required = TRUE); '
            'cat("VERSION:", reticulate::py_to_r(smrmagic:::.sm_import("sm_r_magic._version")$`__version__`), "\\n")')
    environment = {k: v for k, v in os.environ.items() if k not in ("SM_R_MAGIC_PYTHON", "RETICULATE_PYTHON")}
    result = subprocess.run(["Rscript", "-e", code], env=dict(environment, R_LIBS=str(r_library)), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # not here: "" on sys.path finds it
    from sm_r_magic._version import __version__

    assert f"VERSION: {__version__}" in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
def test_r_package_in_an_irkernel_notebook(r_library, tmp_path):
    """In IRkernel (Debian's r-cran-irkernel), progress lines and the job's output reach the notebook as stream
    output while the job runs, and a failed job is an R error whose message is the R error."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("ir")
    except NoSuchKernel:
        pytest.skip("no IRkernel kernel spec (apt-get install r-cran-irkernel)")
    env = dict(os.environ, R_LIBS=str(r_library), SM_R_MAGIC_PYTHON=sys.executable,
               SM_R_MAGIC_LOCAL_ROOT=str(tmp_path / "root"))
    env.pop("SM_R_MAGIC_BACKEND", None)
    km = KernelManager(kernel_name="ir")
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def run(code):
            out = []

            def hook(msg):
                if msg["msg_type"] in ("stream", "error", "display_data", "execute_result"):
                    out.append((msg["msg_type"], msg["content"]))

            reply = kc.execute_interactive(code, output_hook=hook, timeout=120)
            return reply["content"]["status"], out

        status, out = run('library(smrmagic)\njob <- sm_train("cat(\'hi from the job\\\\n\')", name = "irk")')
        assert status == "ok", out
        streams = [content["text"] for kind, content in out if kind == "stream"]
        assert len(streams) >= 3, streams  # line by line, not one blob at the end
        text = "".join(streams)
        assert "[sm-r-magic] training job irk-" in text and "hi from the job" in text and "Completed" in text
        status, out = run("job")
        assert "Completed" in str(out)
        status, out = run('sm_processing("stop(\'no data\')")')
        assert status == "error"
        error = [content for kind, content in out if kind == "error"][0]
        assert "processing job" in error["evalue"] and "no data" in error["evalue"]
        assert "Traceback (most recent call last)" not in error["evalue"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_r_package_testthat_suite(tmp_path):
    """The testthat suite (local backend, real R jobs and endpoints, addins with rstudioapi stubbed)."""
    _r_package_ready()
    env = dict(os.environ, SM_R_MAGIC_PYTHON=sys.executable, SM_R_MAGIC_LOCAL_ROOT=str(tmp_path / "root"),
               TMPDIR=str(tmp_path))
    env.pop("SM_R_MAGIC_BACKEND", None)
    started = time.monotonic()
    result = subprocess.run(
        ["Rscript", "-e", "testthat::test_local('.', reporter = testthat::ProgressReporter$new(show_praise = FALSE), "
                          "stop_on_failure = TRUE)"],
        cwd=R_PACKAGE, env=env, capture_output=True, text=True, timeout=600)  # ~30 s; generous when loaded
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "FAIL 0" in output, output
    assert "SKIP 0" in output, output  # with sm_r_magic.api.deploy present, nothing may skip here
    print(output[-3000:], f"\n(testthat suite: {time.monotonic() - started:.1f}s)")


# -- the R package's wording: the API's messages are written for the magics ------------------------------------

@pytest.fixture
def wording(monkeypatch):
    """The R package's Python side (inst/python), imported as reticulate imports it."""
    monkeypatch.syspath_prepend(BRIDGE_DIR)
    import smrmagic_bridge
    import smrmagic_wording

    return smrmagic_wording, smrmagic_bridge


# The magics' words an R user must not meet: --options, %%magics, %config RMagic.x, predictor.x, .wait().
MAGIC_WORDS = re.compile(r"(?<![\w-])--[a-z]|%%?r_[a-z]|%config|RMagic\.|predictor\.|(?<![\w)])\.(wait|stop|logs)\(\)"
                         r"|\bthe cell\b")
# Modules whose messages only the magics, the image command or the CLI show (the R package cannot reach them).
NOT_REACHED_FROM_R = {"magics.py", "image.py", "kernel_install.py", "cli.py", "cli_jobs.py", "widgets.py",
                      "widgets_support.py"}


def _string_constants(trees):
    """name -> every string assigned to it at any level (HINTs, class attributes such as _missing_advice)."""
    found = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                text = _message_text(node.value, {})
                if text is not None:
                    found.setdefault(node.targets[0].id, []).append(text)
    return found


def _message_text(node, constants):
    """The text of a message expression, placeholders as x (or 'x' for !r); None when it is not text."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(value.value)
                continue
            inner = value.value
            name = getattr(inner, "attr", None) or getattr(inner, "id", None)
            if name in constants:
                parts.append(" ".join(constants[name]))
            else:
                parts.append("'x'" if value.conversion == ord("r") else "x")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return (_message_text(node.left, constants) or "x") + (_message_text(node.right, constants) or "x")
    if isinstance(node, ast.IfExp):
        return f"{_message_text(node.body, constants) or 'x'} {_message_text(node.orelse, constants) or 'x'}"
    name = getattr(node, "attr", None) or getattr(node, "id", None)
    if name in constants:
        return " ".join(constants[name])
    return None


def test_no_message_of_the_api_reaches_r_in_the_magics_words(wording):
    """Every SmRMagicError message the R package can meet (read from the source, so new messages are covered
    too) reads in R's words once the bridge has reworded it."""
    r_words = wording[0].r_words
    package = os.path.join(REPO, "sm_r_magic")
    trees = {}
    for folder, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as fh:
                    trees[path] = ast.parse(fh.read())
    constants = _string_constants(trees)
    checked, leaks = 0, []
    for path, tree in trees.items():
        if os.path.basename(path) in NOT_REACHED_FROM_R:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "SmRMagicError" and node.args:
                message = _message_text(node.args[0], constants) or ""
                reworded = r_words(message)
                checked += 1
                if MAGIC_WORDS.search(re.sub(r"`[^`]*`", "", reworded)):
                    leaks.append(f"{os.path.relpath(path, REPO)}:{node.lineno}: {reworded}")
    assert checked > 50, checked  # the scan found the messages
    assert not leaks, "\n".join(leaks)


R_WORDS_EXAMPLES = [
    ("invalid --name 'a b': use letters (e.g. --name mtcars-lm)",
     'invalid name = "a b": use letters (e.g. name = "mtcars-lm")'),
    ("--model lm-1 is InProgress: deploy a Completed training job (wait for it with .wait())",
     'model = "lm-1" is InProgress: deploy a Completed training job (wait for it with sm_wait())'),
    ("no training job in this session: pass --model JOB (a handle)",
     "no training job in this session: pass model = JOB (a handle)"),
    ("endpoint e-1 was deleted: deploy the model again with %%r_deploy --model /r/model.tar.gz (a new endpoint and "
     "predictor)", 'endpoint e-1 was deleted: deploy the model again with sm_deploy(model = "/r/model.tar.gz") (a new '
     "endpoint and handle)"),
    ("local endpoint e-1 is Failed, not InService: see predictor.failure_reason and predictor.logs()",
     "local endpoint e-1 is Failed, not InService: see sm_failure_reason(endpoint) and sm_logs(endpoint)"),
    ("--input raw: /x does not exist", "inputs$raw: /x does not exist"),
    ("--max-wait goes with --spot", "`max_wait` goes with spot = TRUE"),
    ("give at least that (or a smaller --max-run)", "give at least that (or a smaller `max_runtime`)"),
    ("--packages: 'x y' is not an R package name (e.g. --packages glmnet,data.table)",
     '`packages`: \'x y\' is not an R package name (e.g. packages = c("glmnet", "data.table"))'),
    ("e.g. --metric rmse='rmse: ([0-9.]+)'", 'e.g. metrics = list(rmse = "rmse: ([0-9.]+)")'),
    ("train.R is both the cell and a file in --source-dir/--file",
     "train.R is both the code and a file in `source_dir`/`files`"),
    ('no region: %config RMagic.region = "us-east-1" (or set SM_R_MAGIC_REGION)',
     'no region: sm_config(region = "us-east-1") (or set SM_R_MAGIC_REGION)'),
    ("not in Docker: build it with `sm-r-magic image build --push` (RMagic.image names it)",
     "not in Docker: build it with `sm-r-magic image build --push` (sm_config()$image names it)"),
    ("list them with %r_jobs --backend sagemaker", 'list them with sm_jobs(backend = "sagemaker")'),
    ("or use --backend local", 'or use backend = "local"'),
    ("pass --backend to name one", "pass `backend` to name one"),
    # pipelines and the model registry (issue 13): Python's list and dict literals, the magics' cells and options
    ("a pipeline needs at least one step: give the handles of the cells to chain, e.g. steps=[prep, fit, ev] "
     "(--steps prep,fit,ev)",
     "a pipeline needs at least one step: give the handles of the jobs to chain, e.g. steps = list(prep, fit, ev)"),
    ("%r_pipeline needs --steps: the handles of the cells to chain, e.g. --steps prep,fit,ev",
     "sm_pipeline() needs `steps`: the handles of the jobs to chain, e.g. steps = list(prep, fit, ev)"),
    ("step 'x' is not a job handle of this session: give the handles your %%r_processing / %%r_train cells stored "
     "(--as VAR, or the variable of --name)",
     "step 'x' is not a job handle of this session: give the handles sm_processing() / sm_train() returned"),
    ("--register g needs a training step: add the %%r_train cell whose model is registered to the steps",
     'register = "g" needs a training step: add the sm_train() job whose model is registered to the steps'),
    ("--register g: there are 2 training steps (fit, fit2): say whose model to register with --model-step fit2 "
     "(model_step= in Python)",
     'register = "g": there are 2 training steps (fit, fit2): say whose model to register with model_step = "fit2"'),
    ("--inference serve.R: no such R file: give an R file defining model_fn(model_dir), or a %%r_deploy handle",
     'inference = "serve.R": no such R file: give an R file defining model_fn(model_dir), or an sm_deploy() handle'),
    ("--inference names the code registered versions are served with: it goes with --register GROUP",
     "`inference` names the code registered versions are served with: it goes with register = GROUP"),
    ("pipeline parameter raw has no default: give parameters={'raw': ...}",
     "pipeline parameter raw has no default: give parameters = list(raw = ...)"),
    ("pipeline execution p1 of mtcars ran on docker, not local: attach it with backend='docker'",
     'pipeline execution p1 of mtcars ran on docker, not local: attach it with backend = "docker"'),
    ("  .run(parameters={...}) starts an execution; .definition() is the CreatePipeline JSON",
     "  $run(parameters = list(...)) starts an execution; $definition() is the CreatePipeline JSON"),
    ("g: say which version, e.g. g/1 (%r_models g lists them)", 'g: say which version, e.g. g/1 (sm_models("g") lists them)'),
    ("--model-package g/3 is Rejected: approve it first (%r_approve g/3) or deploy another version",
     'model_package = "g/3" is Rejected: approve it first (sm_approve("g/3")) or deploy another version'),
    ("--model-package g: no version is Approved (newest: g/2, PendingManualApproval): approve one with "
     "%r_approve g/2, or name a version",
     'model_package = "g": no version is Approved (newest: g/2, PendingManualApproval): approve one with '
     'sm_approve("g/2"), or name a version'),
    ("give --model or --model-package, not both", "give `model` or `model_package`, not both"),
    ("--model m-1: its training code (train.R) has no deploy.R to serve: write model_fn(model_dir) in a %%r_deploy "
     "cell below the magic line (or train with --file deploy.R)",
     'model = "m-1": its training code (train.R) has no deploy.R to serve: write model_fn(model_dir) in the code of '
     'sm_deploy() (or train with files = "deploy.R")'),
    # the user's own code is quoted as it is
    ("R code does not parse: line 2, column 13: unexpected symbol in `y <- --name foo`",
     "R code does not parse: line 2, column 13: unexpected symbol in `y <- --name foo`"),
    ("R code does not parse: <text>:1: --name x", "R code does not parse: <text>:1: --name x"),
]


@pytest.mark.parametrize("message, expected", R_WORDS_EXAMPLES, ids=[m[:40] for m, _ in R_WORDS_EXAMPLES])
def test_r_words_examples(wording, message, expected):
    assert wording[0].r_words(message) == expected


def test_progress_lines_reach_r_in_r_words_and_job_output_is_untouched(wording):
    """The bridge's console rewords sm-r-magic's own lines (the detach hint of sm_wait()) and passes the job's
    output through as printed, even when it looks like an option."""
    from sm_r_magic.views import TextView

    _, bridge = wording
    written = []
    console = bridge.RConsole(written.append, io.StringIO())

    class RunningJob:
        name, kind, backend_name = "sleepy-1", "training", "local"

    TextView(RunningJob(), out=console).detached()
    console.write("--model is what my R script printed\n")
    assert written[0] == ('[sm-r-magic] detached from sleepy-1; it keeps running. Re-attach with '
                          'sm_attach("sleepy-1"), stop it with sm_stop()\n')
    assert written[1] == "--model is what my R script printed\n"
