"""A throw-away JupyterLab server for browser tests.

`jupyterlab_server(tmp_path)` starts `jupyter lab` from this test's Python on 127.0.0.1, on a free port,
with a random token, its own root dir and fresh JUPYTER_CONFIG_DIR / JUPYTER_DATA_DIR /
JUPYTER_RUNTIME_DIR / IPYTHONDIR under tmp_path (nothing global is read or written: no user settings,
workspaces or kernels of the machine). The news/announcements and update checks are switched off so no
pop-up covers the notebook and nothing leaves the machine. The server (and, through it, its kernels) is
stopped by PID in teardown, also when the test fails.

    with jupyterlab_server(tmp_path, env={"SM_R_MAGIC_LOCAL_ROOT": ...}) as lab:
        lab.url("lab/tree/test.ipynb")        # with ?token=
        lab.api("GET", "api/kernels")         # JSON
"""

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    def __init__(self, port, token, root, proc, log_path):
        self.port, self.token, self.root, self.proc, self.log_path = port, token, root, proc, log_path
        self.base = f"http://127.0.0.1:{port}/"

    def url(self, path=""):
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def api(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode("utf-8")
        return json.loads(text) if text.strip() else None

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def wait_for_kernel(self, timeout=60):
        """Until a kernel has a websocket connection and is idle (the page can run cells)."""
        deadline = time.monotonic() + timeout
        kernels = []
        while time.monotonic() < deadline:
            try:
                kernels = self.api("GET", "api/kernels")
            except (OSError, urllib.error.URLError):
                kernels = []
            for kernel in kernels or []:
                if kernel.get("connections", 0) >= 1 and kernel.get("execution_state") == "idle":
                    return kernel
            time.sleep(0.25)
        raise TimeoutError(f"no connected idle kernel after {timeout}s: {kernels}\n{self.log()[-3000:]}")


def _write_config(config_dir):
    labconfig = os.path.join(config_dir, "labconfig")
    os.makedirs(labconfig, exist_ok=True)
    with open(os.path.join(labconfig, "page_config.json"), "w") as fh:
        json.dump({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}, fh)
    settings = os.path.join(config_dir, "lab", "user-settings", "@jupyterlab")
    for plugin, values in {
        "apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False,
                                                                 "doNotDisturbMode": True},
        "notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }.items():
        path = os.path.join(settings, plugin)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            json.dump(values, fh)


@contextlib.contextmanager
def jupyterlab_server(tmp_path, env=None, timeout=60):
    tmp_path = str(tmp_path)
    root = os.path.join(tmp_path, "notebooks")
    dirs = {name: os.path.join(tmp_path, "jupyter", name) for name in ("config", "data", "runtime", "ipython")}
    for path in [root, *dirs.values()]:
        os.makedirs(path, exist_ok=True)
    _write_config(dirs["config"])
    port, token = free_port(), secrets.token_hex(16)
    full_env = dict(os.environ)
    full_env.update(JUPYTER_CONFIG_DIR=dirs["config"], JUPYTER_DATA_DIR=dirs["data"],
                    JUPYTER_RUNTIME_DIR=dirs["runtime"], IPYTHONDIR=dirs["ipython"],
                    JUPYTER_PLATFORM_DIRS="1", JUPYTERLAB_SETTINGS_DIR=os.path.join(dirs["config"], "lab", "user-settings"),
                    JUPYTERLAB_WORKSPACES_DIR=os.path.join(dirs["data"], "workspaces"))
    full_env.pop("JUPYTER_PATH", None)
    full_env.update(env or {})
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.news_url=", "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # CI containers run as root
    log_path = os.path.join(tmp_path, "jupyterlab.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=root, env=full_env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(port, token, root, proc, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{lab.log()[-3000:]}")
            try:
                lab.api("GET", "api/status", timeout=2)
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"JupyterLab did not answer in {timeout}s:\n{lab.log()[-3000:]}")
                time.sleep(0.25)
        yield lab
    finally:
        _stop(lab)


def _stop(lab):
    """Shut the kernels down politely, then end the server by its PID (its process group holds only
    the server and the kernels it started: start_new_session)."""
    proc = lab.proc
    if proc.poll() is None:
        try:
            for kernel in lab.api("GET", "api/kernels", timeout=3) or []:
                lab.api("DELETE", f"api/kernels/{kernel['id']}", timeout=10)
        except Exception:
            pass
        proc.send_signal(signal.SIGTERM)  # the server's own PID
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    # kernels are children in the server's session: end any left over (by the group the server led)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
