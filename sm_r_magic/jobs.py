"""Job handles: one class for every backend, driven by the backend's SageMaker-shaped descriptions."""

import datetime
import re
import threading
import time

TERMINAL = ("Completed", "Failed", "Stopped")
STATUS_KEY = {"training": "TrainingJobStatus", "processing": "ProcessingJobStatus"}
KIND_LABEL = {"training": "training job", "processing": "processing job"}


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


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class Job:
    """A processing or training job: status, logs, wait, stop, outputs / model_data."""

    def __init__(self, backend, kind, name, created=None):
        self.backend = backend
        self.kind = kind
        self.name = name
        self._created = created  # epoch seconds, when a listing already told (saves a describe)
        self._description = None
        self._described_at = 0.0
        self._log_cursor = None
        self._log_lines = []
        self._log_lock = threading.Lock()

    # -- state -------------------------------------------------------------------------------------------
    # Properties read a description at most this old, so one widget update makes one describe call.
    max_age = 0.2

    def describe(self, refresh=True):
        if refresh or self._description is None:
            if self._description is not None and self._description.get(STATUS_KEY[self.kind]) in TERMINAL:
                return self._description  # a finished job does not change
            self._description = self.backend.describe_job(self.kind, self.name)
            self._described_at = time.monotonic()
        return self._description

    def _cached(self):
        stale = self._description is None or time.monotonic() - self._described_at > self.max_age
        return self.describe(refresh=stale)

    @property
    def backend_name(self):
        return self.backend.name

    @property
    def status(self):
        return self._cached()[STATUS_KEY[self.kind]]

    @property
    def done(self):
        return self.status in TERMINAL

    @property
    def secondary_status(self):
        desc = self._cached()
        transitions = desc.get("SecondaryStatusTransitions")
        return desc.get("SecondaryStatus") or (transitions[-1]["Status"] if transitions else desc[STATUS_KEY[self.kind]])

    @property
    def transitions(self):
        return list(self._cached().get("SecondaryStatusTransitions") or [])

    @property
    def failure_reason(self):
        """Why the job failed: the container's own message (ExitMessage, from /opt/ml/output/message) and
        SageMaker's FailureReason, which for processing jobs is often only "AlgorithmError: See job logs"."""
        desc = self._cached()
        exit_message, reason = desc.get("ExitMessage"), desc.get("FailureReason")
        if exit_message and reason and reason.strip() not in exit_message:
            return f"{exit_message.rstrip()}\n({reason.strip()})" if exit_message.strip() not in reason else reason
        return exit_message or reason

    @property
    def model_data(self):
        if self.kind != "training":
            return None
        return (self._cached().get("ModelArtifacts") or {}).get("S3ModelArtifacts")

    @property
    def outputs(self):
        """Output name -> location: processing outputs, or a training job's model (and output data)."""
        desc = self._cached()
        if self.kind == "processing":
            return {o["OutputName"]: o["S3Output"]["S3Uri"]
                    for o in desc.get("ProcessingOutputConfig", {}).get("Outputs", [])}
        result = {}
        if self.model_data:
            result["model"] = self.model_data
            result["output"] = self.model_data[: -len("model.tar.gz")] + "output.tar.gz"
        return result

    @property
    def hyperparameters(self):
        import json

        raw = self._cached().get("HyperParameters") or {}
        decoded = {}
        for key, value in raw.items():
            if key.startswith("sagemaker_"):
                continue
            try:
                decoded[key] = json.loads(value)
            except ValueError:
                decoded[key] = value
        return decoded

    @property
    def created(self):
        """Creation time in epoch seconds (for ordering jobs of any backend)."""
        if self._created is None:
            when = self._cached().get("CreationTime")
            self._created = when.timestamp() if hasattr(when, "timestamp") else float(when or 0)
        return self._created

    @property
    def start_time(self):
        desc = self._cached()
        return desc.get("TrainingStartTime") or desc.get("ProcessingStartTime") or desc.get("CreationTime")

    @property
    def end_time(self):
        desc = self._cached()
        return desc.get("TrainingEndTime") or desc.get("ProcessingEndTime")

    @property
    def elapsed(self):
        """Seconds since creation (until the end once finished)."""
        desc = self._cached()
        start = desc.get("CreationTime")
        if not start:
            return 0.0
        end = self.end_time if desc[STATUS_KEY[self.kind]] in TERMINAL and self.end_time else _now()
        return max(0.0, (end - start).total_seconds())

    @property
    def billable_seconds(self):
        return self._cached().get("BillableTimeInSeconds")

    @property
    def local_folder(self):
        return self._cached().get("LocalJobFolder")

    # -- logs --------------------------------------------------------------------------------------------
    def poll_logs(self):
        """New log lines since the last call (also kept for logs())."""
        with self._log_lock:
            lines, self._log_cursor = self.backend.read_logs(self.kind, self.name, self._log_cursor)
            self._log_lines.extend(lines)
            return lines

    def logs(self):
        """Everything the job printed so far."""
        self.poll_logs()
        return "\n".join(self._log_lines) + ("\n" if self._log_lines else "")

    def metrics(self, regexes):
        """The last value of each metric regex (group 1) in the logs, as a float."""
        text = self.logs()
        values = {}
        for name, regex in regexes.items():
            found = re.findall(regex, text)
            if found:
                last = found[-1][0] if isinstance(found[-1], tuple) else found[-1]
                try:
                    values[name] = float(last)
                except ValueError:
                    values[name] = last
        return values

    # -- control -----------------------------------------------------------------------------------------
    def stop(self, wait=True, timeout=120):
        """Stop the job (SIGTERM reaches R; the status becomes Stopped)."""
        self.backend.stop_job(self.kind, self.name)
        if wait:
            deadline = time.monotonic() + timeout
            while not self.done and time.monotonic() < deadline:
                time.sleep(0.1)
        return self

    def wait(self, progress="auto", timeout=None):
        """Wait for the job to end, showing progress; Ctrl-C detaches (the job keeps running)."""
        from .progress import watch

        return watch(self, progress=progress, timeout=timeout)

    def refresh_interval(self, waited):
        low, high = self.backend.poll_interval
        return min(high, low * (1.5 ** max(0, waited)))

    def summary(self):
        """One line: name, backend, status, time and where the results are."""
        status = self.status
        parts = [f"{KIND_LABEL[self.kind]} {self.name} ({self.backend_name}): {status}"]
        if status in TERMINAL:
            parts.append(f"in {self.elapsed:.1f}s")
        else:
            parts.append(f"{self.secondary_status}, {self.elapsed:.0f}s so far")
        if status == "Completed":
            if self.kind == "training":
                parts.append(f"model: {self.model_data}")
            elif self.outputs:
                parts.append("outputs: " + ", ".join(f"{k}={v}" for k, v in self.outputs.items()))
        if self.billable_seconds:
            parts.append(f"billable {self.billable_seconds}s")
        return " · ".join(parts)

    def __str__(self):
        return self.name  # so that {job} in a magic line expands to the job's name

    def __repr__(self):
        return f"<{type(self).__name__} {self.summary()}>"

    def _repr_pretty_(self, printer, cycle):
        printer.text(self.summary())

    def _ipython_display_(self):
        from .progress import display_job

        display_job(self)
