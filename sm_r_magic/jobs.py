"""Job handles (one class for every backend, driven by the backend's SageMaker-shaped descriptions) and the
session: what this Python process started or attached."""

import json
import threading
import time

from .contract import JOB_TERMINAL as TERMINAL
from .contract import (CODE_INPUT, HP_SUBMIT_DIRECTORY, KIND_LABEL, MODEL_ARTIFACT, OUTPUT_ARTIFACT, RESERVED_HP_PREFIX,
                       STATUS_KEY)
from .spec import base_name, request_from_description
from .handle import Handle, Snapshot, last_metric_values


class Session:
    """What this Python process started or attached: for %r_jobs, deploy defaults and clean-up."""

    def __init__(self):
        self._lock = threading.Lock()
        self.jobs = []
        self.endpoints = []

    def add_job(self, job):
        with self._lock:
            self.jobs = [j for j in self.jobs if j.name != job.name] + [job]
        return job

    def add_endpoint(self, endpoint):
        with self._lock:
            self.endpoints = [e for e in self.endpoints if e.endpoint_name != endpoint.endpoint_name] + [endpoint]
        return endpoint

    def remove_endpoint(self, endpoint):
        with self._lock:
            self.endpoints = [e for e in self.endpoints if e.endpoint_name != endpoint.endpoint_name]

    def last_training_job(self):
        with self._lock:
            jobs = [j for j in self.jobs if j.kind == "training"]
        return jobs[-1] if jobs else None


SESSION = Session()


class Job(Handle):
    """A processing or training job: status, logs, wait, stop, outputs / model_data."""

    terminal_statuses = TERMINAL

    def __init__(self, backend, kind, name, created=None):
        super().__init__(backend, name, created)
        self.kind = kind

    def _fetch_description(self):
        return self.backend.describe_job(self.kind, self.name)

    def _read_logs(self, cursor):
        return self.backend.read_logs(self.kind, self.name, cursor)

    def _status_of(self, description):
        return description[STATUS_KEY[self.kind]]

    # -- what the description says -----------------------------------------------------------------------
    @property
    def base_name(self):
        """The --name the job was submitted with (its pipeline step name)."""
        return base_name(self.name)

    @property
    def request(self):
        """The CreateTrainingJob / CreateProcessingJob request that made this job."""
        return request_from_description(self.kind, self.describe(refresh=False))

    @property
    def secondary_status(self):
        return _secondary_status(self._cached(), self.kind)

    @property
    def transitions(self):
        return list(self._cached().get("SecondaryStatusTransitions") or [])

    @property
    def failure_reason(self):
        """Why the job failed: the container's own message (ExitMessage, from /opt/ml/output/message) and
        SageMaker's FailureReason, which for processing jobs is often only "AlgorithmError: See job logs"."""
        return _failure_reason(self._cached())

    @property
    def model_data(self):
        return _model_data(self._cached(), self.kind)

    @property
    def outputs(self):
        """Output name -> location: processing outputs, or a training job's model (and output data)."""
        return _outputs(self._cached(), self.kind)

    @property
    def hyperparameters(self):
        raw = self._cached().get("HyperParameters") or {}
        decoded = {}
        for key, value in raw.items():
            if key.startswith(RESERVED_HP_PREFIX):
                continue
            try:
                decoded[key] = json.loads(value)
            except ValueError:
                decoded[key] = value
        return decoded

    @property
    def code_uri(self):
        """Where the job's code (its sourcedir.tar.gz) is: the training job's sagemaker_submit_directory, or the
        processing job's code input; None when the request names none."""
        desc = self._cached()
        if self.kind == "processing":
            for item in desc.get("ProcessingInputs") or []:
                if item.get("InputName") == CODE_INPUT:
                    return (item.get("S3Input") or {}).get("S3Uri")
            return None
        submitted = (desc.get("HyperParameters") or {}).get(HP_SUBMIT_DIRECTORY)
        try:
            return json.loads(submitted) if submitted else None
        except ValueError:
            return submitted

    @property
    def metric_regexes(self):
        """--metric definitions: name -> regex."""
        return _metric_regexes(self._cached())

    @property
    def start_time(self):
        desc = self._cached()
        return desc.get("TrainingStartTime") or desc.get("ProcessingStartTime") or desc.get("CreationTime")

    @property
    def end_time(self):
        return _end_time(self._cached())

    @property
    def billable_seconds(self):
        return self._cached().get("BillableTimeInSeconds")

    def metrics(self, regexes=None):
        """The last value of each metric regex (group 1) in the logs, as a float; default: the job's --metric
        definitions."""
        return last_metric_values(self.logs(), self.metric_regexes if regexes is None else regexes)

    def snapshot(self, fetch=True):
        desc = self._description_for(fetch)
        if fetch is True:
            self.poll_logs()
        status = desc[STATUS_KEY[self.kind]]
        return Snapshot(
            kind=self.kind, name=self.name, backend=self.backend_name, status=status,
            secondary_status=_secondary_status(desc, self.kind), terminal=status in TERMINAL,
            created=desc.get("CreationTime"), ended=_end_time(desc),
            transitions=tuple(desc.get("SecondaryStatusTransitions") or ()), failure_reason=_failure_reason(desc),
            outputs=_outputs(desc, self.kind), model_data=_model_data(desc, self.kind),
            billable_seconds=desc.get("BillableTimeInSeconds"), local_folder=desc.get("LocalJobFolder"),
            log_lines=self.log_lines, metric_regexes=_metric_regexes(desc))

    # -- control -----------------------------------------------------------------------------------------
    def stop(self, wait=True, timeout=120):
        """Stop the job (SIGTERM reaches R; the status becomes Stopped)."""
        self.backend.stop_job(self.kind, self.name)
        if wait:
            deadline = time.monotonic() + timeout
            while not self.done and time.monotonic() < deadline:
                time.sleep(0.1)
        return self

    def summary(self):
        """One line: name, backend, status, time and where the results are."""
        return summary_line(self.snapshot(fetch="if-stale"))


def summary_line(snap, now=None):
    """name (backend): status · time · where the results are."""
    parts = [f"{KIND_LABEL[snap.kind]} {snap.name} ({snap.backend}): {snap.status}"]
    if snap.terminal:
        parts.append(f"in {snap.elapsed(now):.1f}s")
    else:
        parts.append(f"{snap.secondary_status}, {snap.elapsed(now):.0f}s so far")
    if snap.status == "Completed":
        if snap.kind == "training":
            parts.append(f"model: {snap.model_data}")
        elif snap.outputs:
            parts.append("outputs: " + ", ".join(f"{k}={v}" for k, v in snap.outputs.items()))
    if snap.billable_seconds:
        parts.append(f"billable {snap.billable_seconds}s")
    return " · ".join(parts)


# -- reading a job description ----------------------------------------------------------------------------
def _secondary_status(desc, kind):
    transitions = desc.get("SecondaryStatusTransitions")
    return desc.get("SecondaryStatus") or (transitions[-1]["Status"] if transitions else desc[STATUS_KEY[kind]])


def _failure_reason(desc):
    exit_message, reason = desc.get("ExitMessage"), desc.get("FailureReason")
    if exit_message and reason and reason.strip() not in exit_message:
        return f"{exit_message.rstrip()}\n({reason.strip()})" if exit_message.strip() not in reason else reason
    return exit_message or reason


def _model_data(desc, kind):
    if kind != "training":
        return None
    return (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")


def _outputs(desc, kind):
    if kind == "processing":
        return {o["OutputName"]: o["S3Output"]["S3Uri"]
                for o in desc.get("ProcessingOutputConfig", {}).get("Outputs", [])}
    model = _model_data(desc, kind)
    if not model:
        return {}
    return {"model": model, "output": model[: -len(MODEL_ARTIFACT)] + OUTPUT_ARTIFACT}


def _end_time(desc):
    return desc.get("TrainingEndTime") or desc.get("ProcessingEndTime")


def _metric_regexes(desc):
    definitions = (desc.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    return {d["Name"]: d["Regex"] for d in definitions if d.get("Name") and d.get("Regex")}
