"""Runs a pipeline definition JSON on a local or docker backend, as SageMaker Pipelines runs it.

Steps start as soon as the steps they need have succeeded (independent steps run in parallel, each in its
own thread); a job step's Arguments are resolved (expressions.py), given a unique job name and submitted
with the backend's `submit`; a Condition step evaluates its conditions and activates its IfSteps or
ElseSteps; a Fail step fails the execution with its message; RegisterModel adds a version to the local
model registry; CacheConfig reuses the newest successful job of the same step with the same cache key within
ExpireAfter (and the step's record says so). A failed step fails the execution with its R error: no further
step starts (running ones finish) and the job folder is kept. A stop request stops the running jobs.

Everything is recorded in the execution folder's state.json (executions.py), by this process only."""

import datetime
import hashlib
import json
import os
import queue
import tempfile
import threading
import time
import traceback

from .. import spec
from . import jobfolder as jf
from ..contract import JOB_TERMINAL, NAME_KEY, STATUS_KEY
from ..errors import SmRMagicError
from ..jobs import Job
from ..uris import is_s3, path_of
from ..workflow import durations, expressions, graph
from .local_registry import LocalModelRegistry

JOB_KIND = {"Processing": "processing", "Training": "training"}
# The request members whose change makes SageMaker run a cached step again ("Default cache key attributes by
# pipeline step type"); outputs are not among them.
CACHE_KEYS = {
    "processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "training": ("AlgorithmSpecification", "CheckpointConfig", "DebugHookConfig", "DebugRuleConfigurations",
                 "Environment", "HyperParameters", "InputDataConfig"),
}
ARN_KIND = {"processing": "processing-job", "training": "training-job"}
METADATA_KEY = {"processing": "ProcessingJob", "training": "TrainingJob"}


class StepFailed(Exception):
    """A step ended Failed: the message is the step's FailureReason."""


def cache_key(kind, request):
    """sha256 of the members of a resolved request that decide whether a cached run can be reused."""
    subset = {key: request.get(key) for key in CACHE_KEYS[kind]}
    return hashlib.sha256(json.dumps(subset, sort_keys=True, default=str).encode()).hexdigest()


def read_json(uri):
    """A JSON file by local path, file:// or s3:// URI (a property file, a metrics report)."""
    try:
        if is_s3(uri):
            with tempfile.TemporaryDirectory() as tmp:
                jf.fetch(uri, tmp)
                with open(os.path.join(tmp, os.path.basename(uri))) as fh:
                    return json.load(fh)
        with open(path_of(uri)) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise expressions.ExpressionError(f"{uri} does not exist: the step did not write it") from None
    except (OSError, ValueError) as exc:
        raise expressions.ExpressionError(f"cannot read {uri} as JSON: {exc}") from None


class Executor:
    def __init__(self, folder, backend):
        self.folder = folder
        self.backend = backend
        self.definition = folder.definition()
        self.parameters = folder.parameters()
        self.state = folder.state()
        self.steps = graph.check(self.definition)  # name -> (step, parent condition, branch)
        self.registry = LocalModelRegistry(folder.root)
        self.descriptions = {}  # step name -> what Get Steps.<name>.* reads
        self.active = {name for name, (_, parent, _) in self.steps.items() if parent is None}
        self.failure = self.state.get("FailureReason")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.property_files = {name: {pf["PropertyFileName"]: pf for pf in step.get("PropertyFiles") or []}
                               for name, (step, _, _) in self.steps.items()}
        self._restore()

    def _restore(self):
        """What the steps recorded before this process started tells: the descriptions of steps that
        succeeded and the branches their conditions chose (the starting process submits the first jobs)."""
        for name, record in (self.state.get("Steps") or {}).items():
            step = self.steps[name][0]
            if record.get("StepStatus") != "Succeeded":
                continue
            if step.get("Type") in JOB_KIND:
                self.descriptions[name] = self.backend.describe_job(JOB_KIND[step["Type"]], record["JobName"])
            elif step.get("Type") == "Condition":
                outcome = record["Metadata"]["Condition"]["Outcome"]
                self.descriptions[name] = {"Outcome": outcome}
                branch = "IfSteps" if outcome == "True" else "ElseSteps"
                self.active |= {child["Name"] for child in (step.get("Arguments") or {}).get(branch) or []}
            elif step.get("Type") == "RegisterModel":
                group, version = record["Metadata"]["RegisterModel"]["Arn"].rsplit("/", 2)[-2:]
                self.descriptions[name] = self.registry.describe(group, int(version))

    # -- state ----------------------------------------------------------------------------------------------
    @property
    def execution_id(self):
        return self.state["PipelineExecutionId"]

    def _save(self, **changes):
        with self._lock:
            self.state.update(changes)
            self.folder.write_state(self.state)

    def _record(self, name, **fields):
        with self._lock:
            step = self.steps[name][0]
            record = self.state.setdefault("Steps", {}).setdefault(
                name, {"StepName": name, "StepType": step.get("Type"), "AttemptCount": 1})
            record.update(fields)
            self.folder.write_state(self.state)

    def _status(self, name):
        return (self.state.get("Steps", {}).get(name) or {}).get("StepStatus")

    # -- control --------------------------------------------------------------------------------------------
    def request_stop(self, *_):
        """SIGTERM: stop the running jobs, start nothing more."""
        if not self._stop.is_set():
            self._stop.set()
            self._save(PipelineExecutionStatus="Stopping")

    def submit_initial(self):
        """In the process that starts the execution, before the runner exists: submit the job steps that
        need no other step, so that they run while the runner starts (it adopts them)."""
        for name in self._startable(()):
            kind = JOB_KIND.get(self.steps[name][0].get("Type"))
            if kind:
                self._record(name, StepStatus="Starting", StartTime=time.time())
                self._guarded(name, lambda: self._launch(name, self.steps[name][0], kind))

    def run(self):
        if self.folder.stop_requested():
            self._stop.set()
        self._save(RunnerPid=os.getpid(),
                   PipelineExecutionStatus="Stopping" if self._stop.is_set() else "Executing")
        finished = queue.Queue()  # names of steps whose thread has ended
        running = set()
        for name, record in list(self.state.get("Steps", {}).items()):
            if record.get("StepStatus") in ("Starting", "Executing", "Stopping"):  # submitted before the runner
                running.add(name)
                threading.Thread(target=self._run_step, args=(name, finished), name=name, daemon=True).start()
        while True:
            if not self._stop.is_set() and self.failure is None:
                for name in self._startable(running):
                    self._record(name, StepStatus="Starting", StartTime=time.time())
                    running.add(name)
                    threading.Thread(target=self._run_step, args=(name, finished), name=name, daemon=True).start()
            if not running:
                break
            if self.folder.stop_requested():
                self.request_stop()
            try:
                running.discard(finished.get(timeout=0.5))
                while True:
                    running.discard(finished.get_nowait())
            except queue.Empty:
                pass
        self._finish()

    def _startable(self, running):
        return [name for name in self.steps if name in self.active and self._status(name) is None
                and name not in running
                and all(self._status(dep) == "Succeeded" for dep in graph.dependencies(self.steps[name][0]))]

    def _finish(self):
        if self._stop.is_set():
            status = "Stopped"
        elif self.failure is not None:
            status = "Failed"
        else:
            status = "Succeeded"
        self._save(PipelineExecutionStatus=status, EndTime=time.time(),
                   FailureReason=self.failure if status == "Failed" else None)

    # -- steps ----------------------------------------------------------------------------------------------
    def _run_step(self, name, finished):
        try:
            self._guarded(name, lambda: self._step(name, self.steps[name][0]))
        finally:
            finished.put(name)

    def _step(self, name, step):
        kind = step.get("Type")
        if kind in JOB_KIND:
            record = self.state["Steps"][name]
            job = (Job(self.backend, JOB_KIND[kind], record["JobName"]) if record.get("JobName")
                   else self._launch(name, step, JOB_KIND[kind]))
            if job is not None:
                self._await(name, job, JOB_KIND[kind])
        elif kind == "Condition":
            self._condition_step(name, step)
        elif kind == "RegisterModel":
            self._register_step(name, step)
        elif kind == "Fail":
            message = expressions.evaluate((step.get("Arguments") or {}).get("ErrorMessage", ""), self._context())
            self._record(name, Metadata={"Fail": {"ErrorMessage": message}})
            raise StepFailed(message)
        else:
            raise StepFailed(f"step type {kind!r} is not supported by the local executor (it runs Processing, "
                             "Training, Condition, RegisterModel and Fail steps)")

    def _guarded(self, name, action):
        """Run a step's action; whatever goes wrong fails the step (and the execution) with one line."""
        try:
            action()
        except StepFailed as exc:
            self._fail(name, str(exc), str(exc))
        except SmRMagicError as exc:
            self._fail(name, str(exc), f"step {name} failed: {exc}")
        except Exception as exc:  # a bug or an I/O failure: the execution says so, the log has the traceback
            traceback.print_exc()
            self._fail(name, f"{type(exc).__name__}: {exc}", f"step {name} failed: {type(exc).__name__}: {exc}")

    def _fail(self, name, reason, execution_reason):
        with self._lock:
            if self.failure is None:
                self.failure = self.state["FailureReason"] = execution_reason
        self._record(name, StepStatus="Failed", EndTime=time.time(), FailureReason=reason)

    def _succeed(self, name, description, **fields):
        with self._lock:
            self.descriptions[name] = description
        self._record(name, StepStatus="Succeeded", EndTime=time.time(), **fields)

    def _context(self, kind=None, job_name=None):
        created = datetime.datetime.fromtimestamp(self.state["CreationTime"], datetime.timezone.utc)
        execution = {
            "PipelineExecutionId": self.execution_id, "PipelineExecutionArn": self.state["PipelineExecutionArn"],
            "PipelineName": self.state["PipelineName"], "PipelineArn": self.state["PipelineArn"],
            "StartDateTime": created.isoformat(),
            "CurrentDateTime": lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }
        if kind:
            execution[NAME_KEY[kind]] = job_name
        with self._lock:
            steps = dict(self.descriptions)
        return expressions.Context(steps=steps, parameters=self.parameters, execution=execution,
                                   property_files=self.property_files, read_json=read_json)

    def _launch(self, name, step, kind):
        """Resolve the step's arguments, reuse a cached run or submit the job; the Job, or None when the step
        already ended (a cache hit, a stop)."""
        job_name = spec.unique_name(name, self.execution_id)
        arguments = expressions.resolve(step.get("Arguments") or {}, self._context(kind, job_name))
        request = {NAME_KEY[kind]: job_name, **arguments}
        cache = step.get("CacheConfig") or {}
        key = cache_key(kind, request) if cache.get("Enabled") else None
        if key and self._reuse_cached(name, kind, key, cache.get("ExpireAfter")):
            return None
        if self._stop.is_set():
            self._record(name, StepStatus="Stopped", EndTime=time.time())
            return None
        job = self.backend.submit(kind, request)
        self._record(name, StepStatus="Executing", JobName=job_name, CacheKey=key,
                     Metadata={METADATA_KEY[kind]: {"Arn": f"local:{ARN_KIND[kind]}/{job_name}"}})
        return job

    def _await(self, name, job, kind):
        description = self._wait_for(name, job, kind)
        status = description[STATUS_KEY[kind]]
        if status == "Completed":
            self._succeed(name, description)
        elif status == "Stopped":
            self._record(name, StepStatus="Stopped", EndTime=time.time(), FailureReason=job.failure_reason)
        else:
            reason = job.failure_reason or f"the {kind} job {job.name} failed"
            self._fail(name, reason, f"step {name} ({kind} job {job.name}) failed: {reason}")

    def _wait_for(self, name, job, kind):
        """The job's description once it has ended; a stop request stops it (and waits for its end)."""
        interval = self.backend.poll_interval[0]
        stop_sent = False
        while True:
            description = job.describe(refresh=True)
            if description[STATUS_KEY[kind]] in JOB_TERMINAL:
                return description
            if self._stop.is_set() and not stop_sent:
                self._record(name, StepStatus="Stopping")
                job.stop(wait=False)
                stop_sent = True
            if stop_sent:
                time.sleep(interval)
            else:
                self._stop.wait(interval)

    def _reuse_cached(self, name, kind, key, expire_after):
        """Reuse the newest successful run of this step with the same cache key within ExpireAfter."""
        limit = durations.seconds(expire_after) if expire_after else None
        now = time.time()
        candidates = []
        for sibling in self.folder.siblings():
            state = sibling.state()
            record = (state.get("Steps") or {}).get(name) or {}
            if (record.get("StepStatus") == "Succeeded" and record.get("CacheKey") == key
                    and not record.get("CacheHitResult") and record.get("EndTime")
                    and (limit is None or now - record["EndTime"] <= limit)):
                candidates.append((record["EndTime"], state, record))
        for _, state, record in sorted(candidates, key=lambda c: c[0], reverse=True):
            try:
                description = self.backend.describe_job(kind, record["JobName"])
            except SmRMagicError:  # its job folder was deleted: not reusable
                continue
            if description[STATUS_KEY[kind]] != "Completed":
                continue
            self._succeed(name, description, JobName=record["JobName"], CacheKey=key,
                          CacheHitResult={"SourcePipelineExecutionArn": state["PipelineExecutionArn"]},
                          Metadata={METADATA_KEY[kind]: {"Arn": f"local:{ARN_KIND[kind]}/{record['JobName']}"}})
            return True
        return False

    def _condition_step(self, name, step):
        arguments = step.get("Arguments") or {}
        outcome = expressions.all_hold(arguments.get("Conditions"), self._context())
        branch = "IfSteps" if outcome else "ElseSteps"
        with self._lock:
            self.active |= {child["Name"] for child in arguments.get(branch) or []}
        self._succeed(name, {"Outcome": "True" if outcome else "False"},
                      Metadata={"Condition": {"Outcome": "True" if outcome else "False"}})

    def _register_step(self, name, step):
        context = self._context()
        request = expressions.resolve(step.get("Arguments") or {}, context)
        report = (((request.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}).get("S3Uri")
        metrics = context.json_at(report) if report else None
        described = self.registry.register(request, generated_by=self.state["PipelineExecutionArn"],
                                           metrics=metrics)
        self._succeed(name, described, ModelPackageVersion=described["ModelPackageVersion"],
                      Metadata={"RegisterModel": {"Arn": described["ModelPackageArn"]}})
