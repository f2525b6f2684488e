"""Local pipeline executions on disk: start one (detached), describe it, list its steps, stop it, find it
again after a kernel restart.

    <local_root>/pipelines/<pipeline>/executions/<execution-id>/
        definition.json   the pipeline definition being executed (the same JSON CreatePipeline takes)
        parameters.json   this execution's parameter values (the defaults, with the given ones)
        state.json        status, failure reason, timestamps, backend and settings, runner pid, and one record
                          per step that started (ListPipelineExecutionSteps-shaped, plus its job name)
        stop-requested    written by stop() before it signals the runner
        runner.pid        the runner's process id (the runner also records it in state.json)
        runner.log        what the runner printed

`python -m sm_r_magic.backends.pipeline_runner <execution folder>` runs it (pipeline_executor.py); the answers here are shaped
like DescribePipelineExecution / ListPipelineExecutionSteps / ListPipelineExecutions, so the sagemaker backend
can answer the same questions from the service."""

import datetime
import os
import secrets
import signal
import string
import subprocess
import sys
import time

from .jobfolder import atomic_write_json, read_json
from .processes import pid_alive
from ..contract import FOLDER_BACKENDS
from ..errors import SmRMagicError
from ..workflow import definition as definitions
from ..workflow import graph, names
from .pipeline_executor import Executor

ID_ALPHABET = string.ascii_lowercase + string.digits
EXECUTION_TERMINAL = ("Succeeded", "Failed", "Stopped")

_runners = {}  # execution id -> Popen of its runner, so that finished runners are reaped


def new_execution_id():
    """12 lowercase letters and digits, like SageMaker's execution ids."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(12))


def _time(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc) if epoch else None


def pipelines_dir(root):
    return os.path.join(os.path.abspath(os.path.expanduser(root)), "pipelines")


class ExecutionFolder:
    def __init__(self, path):
        self.path = os.path.abspath(path)

    @classmethod
    def of(cls, root, pipeline, execution_id):
        return cls(os.path.join(pipelines_dir(root), pipeline, "executions", execution_id))

    @property
    def execution_id(self):
        return os.path.basename(self.path)

    @property
    def pipeline(self):
        return os.path.basename(os.path.dirname(os.path.dirname(self.path)))

    @property
    def root(self):
        """The local root this execution lives under."""
        return os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(self.path))))

    def file(self, name):
        return os.path.join(self.path, name)

    def definition(self):
        return read_json(self.file("definition.json"))

    def parameters(self):
        return read_json(self.file("parameters.json"), {})

    def state(self):
        return read_json(self.file("state.json"), {})

    def write_state(self, state):
        state["LastModifiedTime"] = time.time()
        atomic_write_json(self.file("state.json"), state)

    def exists(self):
        return os.path.exists(self.file("state.json"))

    def stop_requested(self):
        return os.path.exists(self.file("stop-requested"))

    def siblings(self):
        """The other executions of the same pipeline."""
        parent = os.path.dirname(self.path)
        return [ExecutionFolder(os.path.join(parent, name)) for name in os.listdir(parent)
                if name != self.execution_id and os.path.isdir(os.path.join(parent, name))]


def start(backend, pipeline, definition, parameters=None):
    """Start an execution of `definition` on a local or docker backend, detached from this process; returns
    its ExecutionFolder at once. Bad input is one line and creates nothing."""
    names.check_pipeline_name(pipeline)
    if backend.name not in FOLDER_BACKENDS:
        raise SmRMagicError(f"the local executor runs pipelines on local and docker; {backend.name} runs "
                            "pipelines itself")
    graph.check(definition)
    values = definitions.resolve_parameters(definition, parameters, backend)
    backend.check_ready()
    root = backend.root
    while True:
        folder = ExecutionFolder.of(root, pipeline, new_execution_id())
        os.makedirs(os.path.dirname(folder.path), exist_ok=True)
        try:
            os.mkdir(folder.path)
            break
        except FileExistsError:
            continue
    atomic_write_json(folder.file("definition.json"), definition)
    atomic_write_json(folder.file("parameters.json"), values)
    now = time.time()
    arn = f"local:pipeline/{pipeline}"
    folder.write_state({
        "PipelineName": pipeline, "PipelineArn": arn, "PipelineExecutionId": folder.execution_id,
        "PipelineExecutionArn": f"{arn}/execution/{folder.execution_id}", "PipelineExecutionStatus": "Executing",
        "CreationTime": now, "EndTime": None, "FailureReason": None, "Backend": backend.name,
        "Settings": backend.config.describe(), "RunnerPid": None, "Steps": {}})
    try:
        Executor(folder, backend).submit_initial()  # the first jobs run while the runner starts
    finally:
        _spawn_runner(folder)  # whatever happened, the runner takes it from here and records the end
    return folder


def _spawn_runner(folder):
    env = dict(os.environ)
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    with open(folder.file("runner.log"), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sm_r_magic.backends.pipeline_runner", folder.path],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # a kernel interrupt or restart must not reach it
    _runners[folder.execution_id] = proc
    # Only the runner writes state.json once it runs (it holds the whole state); its pid goes beside it.
    with open(folder.file("runner.pid"), "w") as fh:
        fh.write(str(proc.pid))


def _runner_pid(folder, state):
    if state.get("RunnerPid"):
        return state["RunnerPid"]
    try:
        with open(folder.file("runner.pid")) as fh:
            return int(fh.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _checked_state(folder):
    """state.json, brought up to date when the runner is gone without saying how the execution ended."""
    state = folder.state()
    if not state:
        raise SmRMagicError(f"no pipeline execution {folder.execution_id} of {folder.pipeline} under "
                            f"{os.path.dirname(folder.path)}")
    proc = _runners.get(folder.execution_id)
    if proc is not None:
        proc.poll()
    if state.get("PipelineExecutionStatus") in ("Executing", "Stopping"):
        pid = _runner_pid(folder, state)
        if pid and not pid_alive(pid):
            state = folder.state()  # it may have ended between the two reads
            if state.get("PipelineExecutionStatus") in ("Executing", "Stopping"):
                stopped = folder.stop_requested()
                state.update(PipelineExecutionStatus="Stopped" if stopped else "Failed", EndTime=time.time(),
                             FailureReason=None if stopped else "the pipeline runner ended unexpectedly (see "
                             f"{folder.file('runner.log')})")
                for record in state.get("Steps", {}).values():
                    if record.get("StepStatus") in ("Starting", "Executing", "Stopping"):
                        record.update(StepStatus="Stopped" if stopped else "Failed", EndTime=time.time())
                folder.write_state(state)
    return state


def describe(folder):
    """DescribePipelineExecution-shaped, plus PipelineName, PipelineExecutionId, EndTime, Parameters
    ([{Name, Value}]), Backend, LocalExecutionFolder and Steps (the step records in start order)."""
    state = _checked_state(folder)
    answer = {key: state.get(key) for key in ("PipelineName", "PipelineArn", "PipelineExecutionArn",
                                               "PipelineExecutionId", "PipelineExecutionStatus", "FailureReason",
                                               "Backend")}
    answer.update(PipelineExecutionDisplayName=state.get("PipelineExecutionId"),
                  CreationTime=_time(state.get("CreationTime")), LastModifiedTime=_time(state.get("LastModifiedTime")),
                  EndTime=_time(state.get("EndTime")), LocalExecutionFolder=folder.path,
                  Parameters=[{"Name": k, "Value": v} for k, v in folder.parameters().items()],
                  Steps=[_step_answer(record) for record in _by_start(state)])
    return answer


def list_steps(folder):
    """ListPipelineExecutionSteps-shaped: the steps that started, newest first (SageMaker's default order)."""
    state = _checked_state(folder)
    return {"PipelineExecutionSteps": [_step_answer(r) for r in reversed(_by_start(state))]}


def _by_start(state):
    return sorted((state.get("Steps") or {}).values(), key=lambda r: (r.get("StartTime") or 0))


def _step_answer(record):
    answer = dict(record)
    for key in ("StartTime", "EndTime"):
        answer[key] = _time(record.get(key))
    answer.pop("CacheKey", None)
    return answer


def list_executions(root, pipeline):
    """ListPipelineExecutions-shaped summaries of a pipeline's local executions, newest first."""
    parent = os.path.join(pipelines_dir(root), names.check_pipeline_name(pipeline), "executions")
    if not os.path.isdir(parent):
        return {"PipelineExecutionSummaries": []}
    summaries = []
    for name in os.listdir(parent):
        folder = ExecutionFolder(os.path.join(parent, name))
        if folder.exists():
            state = _checked_state(folder)
            summaries.append({"PipelineExecutionArn": state.get("PipelineExecutionArn"),
                              "PipelineExecutionId": state.get("PipelineExecutionId"),
                              "StartTime": _time(state.get("CreationTime")),
                              "PipelineExecutionStatus": state.get("PipelineExecutionStatus"),
                              "PipelineExecutionDisplayName": state.get("PipelineExecutionId"),
                              "PipelineExecutionFailureReason": state.get("FailureReason")})
    summaries.sort(key=lambda s: s["StartTime"], reverse=True)
    return {"PipelineExecutionSummaries": summaries}


def find(root, execution_id):
    """The folder of an execution by id (any pipeline), for re-attaching after a restart."""
    base = pipelines_dir(root)
    if os.path.isdir(base):
        for pipeline in os.listdir(base):
            folder = ExecutionFolder.of(root, pipeline, execution_id)
            if folder.exists():
                return folder
    raise SmRMagicError(f"no local pipeline execution {execution_id!r} under {base}")


def stop(folder):
    """Ask the runner to stop: running step jobs are stopped (SIGTERM reaches R), later steps do not start,
    and the execution ends Stopped. Returns False when it had already ended."""
    state = _checked_state(folder)
    if state.get("PipelineExecutionStatus") in EXECUTION_TERMINAL:
        return False
    with open(folder.file("stop-requested"), "w") as fh:
        fh.write(str(time.time()))
    pid = state.get("RunnerPid")  # recorded once the runner handles SIGTERM; before that it reads the file
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
    return True


def wait(folder, timeout=None, interval=0.1):
    """Poll until the execution ends (or `timeout` seconds pass); returns describe(folder)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        answer = describe(folder)
        if answer["PipelineExecutionStatus"] in EXECUTION_TERMINAL:
            return answer
        if deadline is not None and time.monotonic() > deadline:
            return answer
        time.sleep(interval)
