"""A local job folder laid out like /opt/ml, plus the job's state, request and logs beside it.

    <local_root>/jobs/<job-name>/
        request.json   the SageMaker request being executed
        state.json     status, secondary-status transitions, exit code, failure reason, runner pid
        logs.txt       what R printed (stdout and stderr)
        opt/ml/        the container's root (SM_R_MAGIC_ROOT locally, mounted at /opt/ml in docker)
"""

import json
import os
import shutil
import tarfile
import tempfile
import time

from ..contract import MODEL_ARTIFACT, OPT_ML, OUTPUT_ARTIFACT
from ..uris import is_s3, path_of
from ..paths import container_s3

TERMINAL = ("Completed", "Failed", "Stopped")


def atomic_write_json(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, default=str)
    os.replace(tmp, path)


def read_json(path, default=None):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


class JobFolder:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.root = os.path.join(self.path, "opt", "ml")

    @property
    def name(self):
        return os.path.basename(self.path)

    @property
    def request_file(self):
        return os.path.join(self.path, "request.json")

    @property
    def state_file(self):
        return os.path.join(self.path, "state.json")

    @property
    def log_file(self):
        return os.path.join(self.path, "logs.txt")

    def exists(self):
        return os.path.exists(self.state_file)

    def request(self):
        return read_json(self.request_file, {})

    def state(self):
        return read_json(self.state_file, {})

    def create(self, kind, request, launch):
        os.makedirs(self.root, exist_ok=True)
        atomic_write_json(self.request_file, request)
        now = time.time()
        atomic_write_json(self.state_file, {
            "kind": kind, "status": "InProgress", "created": now, "started": None, "ended": None,
            "transitions": [{"Status": "Starting", "StartTime": now, "StatusMessage": "Preparing the job folder"}],
            "exit_code": None, "failure_reason": None, "runner_pid": None, "child_pid": None, "launch": launch,
        })
        open(self.log_file, "a").close()

    def update(self, **changes):
        state = self.state()
        state.update(changes)
        atomic_write_json(self.state_file, state)
        return state

    def transition(self, status, message=""):
        state = self.state()
        now = time.time()
        transitions = state.setdefault("transitions", [])
        if transitions and transitions[-1].get("EndTime") is None:
            transitions[-1]["EndTime"] = now
        transitions.append({"Status": status, "StartTime": now, "StatusMessage": message})
        if status == "Training" and not state.get("started"):
            state["started"] = now
        atomic_write_json(self.state_file, state)

    def finish(self, status, exit_code=None, failure_reason=None):
        self.transition(status, failure_reason or "")
        state = self.state()
        state["transitions"][-1]["EndTime"] = state["transitions"][-1]["StartTime"]
        state.update(status=status, ended=time.time(), exit_code=exit_code, failure_reason=failure_reason)
        atomic_write_json(self.state_file, state)

    def container_path(self, path):
        """/opt/ml/... in a request -> the same place in this job folder."""
        if path.startswith(OPT_ML):
            return self.root + path[len(OPT_ML):]
        return path


# -- moving data in and out: local paths, file:// and s3:// ----------------------------------------------

def fetch(uri, dest_dir):
    """Copy what `uri` names into dest_dir (a file keeps its name; a folder's contents are copied)."""
    os.makedirs(dest_dir, exist_ok=True)
    if is_s3(uri):
        container_s3().fetch(uri, dest_dir, quiet=True)
        return
    src = path_of(uri)
    if os.path.isdir(src):
        shutil.copytree(src, dest_dir, dirs_exist_ok=True)
    elif os.path.isfile(src):
        shutil.copy2(src, os.path.join(dest_dir, os.path.basename(src)))
    else:
        raise FileNotFoundError(f"{uri} does not exist")


def publish_dir(src_dir, uri):
    """Copy a folder's contents to a local path or s3:// prefix (processing outputs)."""
    if is_s3(uri):
        container_s3().upload_dir(src_dir, uri)
        return
    dest = path_of(uri)
    os.makedirs(dest, exist_ok=True)
    shutil.copytree(src_dir, dest, dirs_exist_ok=True)


def pack_dir(src_dir, tarball):
    """model.tar.gz / output.tar.gz: the folder's contents at the archive root, as SageMaker packs them.
    A file with several names in the folder is stored under each name: tarfile would store the second name
    as a hard link, which the container refuses to extract (archives.py)."""
    def plain_files(info):
        if info.islnk():
            info.type, info.linkname = tarfile.REGTYPE, ""
            info.size = os.path.getsize(os.path.join(src_dir, info.name))
        return info

    os.makedirs(os.path.dirname(tarball), exist_ok=True)
    tmp = tarball + ".partial"
    with tarfile.open(tmp, "w:gz", format=tarfile.GNU_FORMAT) as tar:  # pax headers make R's untar warn
        for name in sorted(os.listdir(src_dir)):
            tar.add(os.path.join(src_dir, name), arcname=name, filter=plain_files)
    os.replace(tmp, tarball)
    return tarball


def write_training_config(folder, request):
    config_dir = os.path.join(folder.root, "input", "config")
    os.makedirs(config_dir, exist_ok=True)
    channels = {
        ch["ChannelName"]: {"TrainingInputMode": ch.get("InputMode", "File"), "S3DistributionType": "FullyReplicated",
                            "RecordWrapperType": "None"}
        for ch in request.get("InputDataConfig", [])
    }
    files = {
        "hyperparameters.json": request.get("HyperParameters", {}),
        "inputdataconfig.json": channels,
        "resourceconfig.json": {"current_host": "algo-1", "current_instance_type": request["ResourceConfig"]["InstanceType"],
                                "hosts": ["algo-1"], "network_interface_name": "eth0"},
        "trainingjobconfig.json": request,
    }
    for name, data in files.items():
        atomic_write_json(os.path.join(config_dir, name), data)
    for sub in ("model", "output/data", "code"):
        os.makedirs(os.path.join(folder.root, sub), exist_ok=True)


def stage_training_inputs(folder, request):
    for channel in request.get("InputDataConfig", []):
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        fetch(uri, os.path.join(folder.root, "input", "data", channel["ChannelName"]))


def write_processing_config(folder, request):
    config_dir = os.path.join(folder.root, "config")
    os.makedirs(config_dir, exist_ok=True)
    atomic_write_json(os.path.join(config_dir, "processingjobconfig.json"), request)
    atomic_write_json(os.path.join(config_dir, "resourceconfig.json"), {"current_host": "algo-1", "hosts": ["algo-1"]})
    for out in request.get("ProcessingOutputConfig", {}).get("Outputs", []):
        os.makedirs(folder.container_path(out["S3Output"]["LocalPath"]), exist_ok=True)
    os.makedirs(os.path.join(folder.root, "output"), exist_ok=True)


def stage_processing_inputs(folder, request):
    for item in request.get("ProcessingInputs", []):
        s3_input = item.get("S3Input")
        if s3_input:
            fetch(s3_input["S3Uri"], folder.container_path(s3_input["LocalPath"]))


def model_artifact_path(request):
    output = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    return f"{output}/{request['TrainingJobName']}/output/{MODEL_ARTIFACT}"


def output_artifact_path(request):
    output = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    return f"{output}/{request['TrainingJobName']}/output/{OUTPUT_ARTIFACT}"


def publish_training_outputs(folder, request):
    model_uri = model_artifact_path(request)
    _publish_file(pack_dir(os.path.join(folder.root, "model"), os.path.join(folder.path, MODEL_ARTIFACT)), model_uri)
    data_dir = os.path.join(folder.root, "output", "data")
    if os.path.isdir(data_dir) and os.listdir(data_dir):
        _publish_file(pack_dir(data_dir, os.path.join(folder.path, OUTPUT_ARTIFACT)), output_artifact_path(request))


def _publish_file(path, uri):
    if is_s3(uri):
        container_s3().upload_file(path, uri)
        return
    dest = path_of(uri)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.abspath(dest) != os.path.abspath(path):
        shutil.copy2(path, dest)


def publish_processing_outputs(folder, request):
    for out in request.get("ProcessingOutputConfig", {}).get("Outputs", []):
        local = folder.container_path(out["S3Output"]["LocalPath"])
        if os.path.isdir(local):
            publish_dir(local, out["S3Output"]["S3Uri"])


def failure_message(folder, kind, limit=1024):
    name = "failure" if kind == "training" else "message"
    try:
        with open(os.path.join(folder.root, "output", name), errors="replace") as fh:
            return fh.read()[:limit].strip() or None
    except OSError:
        return None
