"""Endpoints of the local and docker backends: the container's serve mode run by the backend's launcher (a
process, or a container) on 127.0.0.1, recorded in a folder so that any kernel can find, use and delete it.

    <endpoints dir>/<endpoint-name>/
        requests.json   the CreateModel / CreateEndpointConfig / CreateEndpoint requests
        state.json      status (Creating, InService, Failed, Deleted), port, pid or container, owner, keep
        logs.txt        what the server printed
        opt/ml/         the server's root: serve mode extracts model.tar.gz into opt/ml/model

An endpoint not kept (--keep, RMagic.keep_endpoints) ends with the kernel that started it: deleted at exit, and
a server whose kernel was killed is found Deleted (not Failed) by whoever looks next.
"""

import atexit
import os
import time

from ..errors import SmRMagicError
from . import jobfolder as jf
from .endpoint_http import Connections, example, ping
from .folder_jobs import epoch_to_utc
from .processes import pid_alive

LIVE = ("Creating", "InService")


class FolderEndpoints:
    def __init__(self, backend, subdir, launcher):
        self.backend = backend
        self.subdir = subdir
        self.launcher = launcher
        self.connections = Connections()

    @property
    def endpoints_dir(self):
        return os.path.join(self.backend.root, self.subdir)

    def folder(self, name):
        return jf.JobFolder(os.path.join(self.endpoints_dir, name))

    def exists(self, name):
        return self.folder(name).exists()

    def live_names(self, prefix=""):
        """(creation time, name) of every endpoint not deleted whose name starts with `prefix`."""
        if not os.path.isdir(self.endpoints_dir):
            return []
        found = []
        for name in sorted(os.listdir(self.endpoints_dir)):
            state = self.folder(name).state() if name.startswith(prefix) else None
            if state and state.get("status") != "Deleted":
                found.append((state.get("created") or 0, name))
        return found

    # -- creating ----------------------------------------------------------------------------------------
    def deploy(self, requests, keep=False):
        from ..predictor import Predictor

        self.backend.check_ready()
        model, endpoint = requests["model"], requests["endpoint"]
        name = endpoint["EndpointName"]
        folder = self.folder(name)
        if folder.exists():
            raise SmRMagicError(f"a {self.backend.name} endpoint named {name} already exists: delete it or choose "
                                "another --name")
        keep = self.launcher.keep_flag(keep)
        os.makedirs(folder.root, exist_ok=True)
        jf.atomic_write_json(os.path.join(folder.path, "requests.json"), requests)
        launch, fields = self.launcher.prepare_server(folder, model)
        now = time.time()
        jf.atomic_write_json(folder.state_file, dict({
            "kind": "endpoint", "status": "Creating", "created": now, "port": None, "pid": None,
            "owner_pid": os.getpid(), "keep": bool(keep), "failure_reason": None,
            "endpoint_config": endpoint.get("EndpointConfigName"), "model": model.get("ModelName"),
        }, **fields))
        outlives_kernel = bool(keep or self.backend.config.keep_endpoints)
        folder.update(**self.launcher.start_server(folder, launch, outlives_kernel))
        if not outlives_kernel:
            atexit.register(self._delete_at_exit, name, now)
        return Predictor(self.backend, name, keep=keep)

    def _delete_at_exit(self, name, created):
        state = self.folder(name).state()
        if state and state.get("created") == created and state.get("status") != "Deleted":
            try:
                self.delete(name)
            except Exception:
                pass

    # -- state -------------------------------------------------------------------------------------------
    @staticmethod
    def owner_gone(state):
        """The endpoint is not kept and the kernel that started it is no longer running."""
        return not state.get("keep") and not pid_alive(state.get("owner_pid"))

    def _ended_with_owner(self, folder, state):
        """A server that exited ended with the kernel that started it (not kept, no failure recorded): the
        expected end of such an endpoint (deleted), not a failure."""
        return (bool(state.get("owner_pid")) and self.owner_gone(state)
                and not jf.failure_message(folder, "training"))

    def state(self, name, check=True):
        """(folder, state), the status first brought up to date (unless check is false)."""
        folder = self.folder(name)
        state = folder.state()
        if not state:
            raise SmRMagicError(f"no {self.backend.name} endpoint named {name} under {self.endpoints_dir}: "
                                "list them with %r_endpoints")
        self.launcher.reap(folder)
        if check and state["status"] in LIVE:
            running, reason = self.launcher.server_running(folder, state)
            if not running and self._ended_with_owner(folder, state):
                self.connections.close(name)
                self.launcher.stop_server(folder, state)  # removes what is left (docker: the exited container)
                self.launcher.retire(folder)
                state = folder.state() or dict(state, status="Deleted")
            elif not running:
                state = folder.update(status="Failed", failure_reason=reason)
            elif state["status"] == "Creating" and state.get("port") and ping(state["port"]):
                state = folder.update(status="InService", in_service=time.time())
        return folder, state

    def describe(self, name):
        folder, state = self.state(name)
        desc = {
            "EndpointName": name,
            "EndpointConfigName": state.get("endpoint_config"),
            "EndpointStatus": state["status"],
            "CreationTime": epoch_to_utc(state.get("created")),
            "LastModifiedTime": epoch_to_utc(os.path.getmtime(folder.state_file)),
        }
        if state.get("port"):
            desc["LocalUrl"] = f"http://127.0.0.1:{state['port']}"
        desc.update(self.launcher.describe_extra(folder, state))
        if state.get("failure_reason"):
            desc["FailureReason"] = state["failure_reason"]
        return desc

    # -- using -------------------------------------------------------------------------------------------
    def invoke(self, name, body, content_type, accept):
        cheap = self.launcher.cheap_liveness
        folder, state = self.state(name, check=cheap)
        if state["status"] != "InService" and not cheap:
            folder, state = self.state(name)
        if state["status"] == "Deleted":
            requests = jf.read_json(os.path.join(folder.path, "requests.json"), {})
            model = requests.get("model", {}).get("PrimaryContainer", {}).get("ModelDataUrl")
            raise SmRMagicError(f"{self.backend.name} endpoint {name} was deleted: deploy the model again with "
                                "%%r_deploy" + (f" --model {model}" if model else "") + " (a new endpoint and predictor)")
        if state["status"] != "InService":
            raise SmRMagicError(f"{self.backend.name} endpoint {name} is {state['status']}, not InService: "
                                + ("wait for it (predictor.wait())" if state["status"] == "Creating"
                                   else "see predictor.failure_reason and predictor.logs()"))
        return self.connections.invoke(name, state["port"], body, content_type, accept)

    def example(self, name, content_type):
        """One row of the model's inputs as a request body (the server's GET /prototype), or None."""
        _, state = self.state(name, check=self.launcher.cheap_liveness)
        if state["status"] != "InService" or not state.get("port"):
            return None
        return example(state["port"], content_type)

    def read_logs(self, name, cursor=None):
        return self.launcher.server_log_lines(self.folder(name), cursor)

    def delete(self, name):
        folder, state = self.state(name, check=self.launcher.cheap_liveness)
        self.connections.close(name)
        self.launcher.stop_server(folder, state)
        self.launcher.retire(folder)

    def model_request(self, name):
        requests = jf.read_json(os.path.join(self.folder(name).path, "requests.json"))
        if not requests:
            raise SmRMagicError(f"no {self.backend.name} endpoint named {name} under {self.endpoints_dir}")
        return requests["model"]

    def list(self, include_deleted=False):
        from ..predictor import Predictor

        if not os.path.isdir(self.endpoints_dir):
            return []
        found = []
        for name in os.listdir(self.endpoints_dir):
            state = self.folder(name).state()
            if state and state.get("status") in LIVE and self.owner_gone(state):
                try:  # its kernel is gone: the server ended with it (deleted) or is left running
                    state = self.state(name)[1]
                except SmRMagicError:
                    continue
            if state and (include_deleted or state.get("status") != "Deleted"):
                found.append((state.get("created") or 0, Predictor(self.backend, name, keep=state.get("keep", False))))
        return [p for _, p in sorted(found, key=lambda item: item[0])]
