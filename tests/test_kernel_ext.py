"""kernel_ext: `sm-r-magic install-kernel` (kernel spec and ipython_config.py) and the R package
kernel_ext/R/smrmagic, whose testthat suite runs here through Rscript so that `pytest` alone covers it."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from sm_r_magic import cli, kernel_install

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R_PACKAGE = os.path.join(REPO, "kernel_ext", "R", "smrmagic")


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
                 "sm_logs", "sm_wait", "sm_stop", "sm_outputs", "sm_model_data", "sm_delete", "sm_addin_train"):
        assert name in exports.stdout.split(), name
    dcf = (installed / "rstudio" / "addins.dcf").read_text()
    for binding in ("sm_addin_processing", "sm_addin_train", "sm_addin_deploy"):
        assert f"Binding: {binding}\n" in dcf


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
        cwd=R_PACKAGE, env=env, capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "FAIL 0" in output, output
    assert "SKIP 0" in output, output  # with sm_r_magic.api.deploy present, nothing may skip here
    print(output[-3000:], f"\n(testthat suite: {time.monotonic() - started:.1f}s)")
