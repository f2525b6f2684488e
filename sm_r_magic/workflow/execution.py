"""The handle of one pipeline execution, on any backend: status, the steps as ListPipelineExecutionSteps tells
them, each step's job handle (logs, outputs), wait, stop, and the snapshot views draw (steps and graph edges).
Found again after a restart by its execution id (backend.attach)."""

import re
import time

from ..handle import Handle, Snapshot
from . import graph

EXECUTION_TERMINAL = ("Stopped", "Failed", "Succeeded")
_JOB_ARN = re.compile(r"(training|processing)-job/(.+)$")


def graph_edges(definition):
    """(from step, to step, label) of a definition: "" for a step that reads another's properties (or waits for
    it with DependsOn), "if"/"else" from a Condition step to its branches."""
    edges = []
    for name, (step, _parent, _branch) in graph.all_steps(definition).items():
        for needed in sorted(graph.dependencies(step)):
            edges.append((needed, name, ""))
        for branch, children in graph.branch_steps(step).items():
            for child in children:
                edges.append((name, child["Name"], "if" if branch == "IfSteps" else "else"))
    return tuple(edges)


def step_order(definition):
    """Every step's name, in the definition's order (branch steps right after their Condition step)."""
    return list(graph.all_steps(definition))


class PipelineExecution(Handle):
    kind = "pipeline"
    terminal_statuses = EXECUTION_TERMINAL
    max_age = 0.5

    def __init__(self, backend, pipeline_name, execution_id, created=None):
        super().__init__(backend, execution_id, created)
        self.pipeline_name = pipeline_name
        self._definition = None
        self._step_cursors = {}  # step name -> log cursor of its job

    @property
    def execution_id(self):
        return self.name

    def _fetch_description(self):
        return self.backend.describe_pipeline_execution(self.pipeline_name, self.name)

    def _status_of(self, description):
        return description["PipelineExecutionStatus"]

    @property
    def definition(self):
        if self._definition is None:
            self._definition = self.backend.pipeline_execution_definition(self.pipeline_name, self.name)
        return self._definition

    @property
    def parameters(self):
        return {p["Name"]: p["Value"] for p in self._cached().get("Parameters") or []}

    def steps(self):
        """The steps that started, in the definition's order, as ListPipelineExecutionSteps describes them."""
        found = {s["StepName"]: s for s in self.backend.list_pipeline_execution_steps(self.pipeline_name, self.name)}
        return [found[name] for name in step_order(self.definition) if name in found]

    def step_job(self, step_name):
        """The job a training or processing step ran (its logs, outputs, model data)."""
        for step in self.steps():
            if step["StepName"] == step_name:
                metadata = step.get("Metadata") or {}
                job = metadata.get("TrainingJob") or metadata.get("ProcessingJob")
                if job and job.get("Arn"):
                    return self.backend.job_from_arn(job["Arn"])
                raise ValueError(f"step {step_name} of {self.name} ran no job (it is a {next(iter(metadata), 'step')})")
        raise ValueError(f"step {step_name} of {self.name} has not started (steps that started: "
                         f"{', '.join(s['StepName'] for s in self.steps()) or 'none'})")

    def _read_logs(self, cursor):
        """New lines of every step's job, each labelled with its step."""
        lines = []
        for step in self.steps():
            metadata = step.get("Metadata") or {}
            job = metadata.get("TrainingJob") or metadata.get("ProcessingJob")
            if not job or not job.get("Arn"):
                continue
            name = step["StepName"]
            match = _JOB_ARN.search(job["Arn"])
            if not match:
                continue
            new, self._step_cursors[name] = self.backend.read_logs(match.group(1), match.group(2),
                                                                   self._step_cursors.get(name))
            lines += [f"[{name}] {line}" for line in new]
        return lines, cursor

    def stop(self, wait=True, timeout=120):
        self.backend.stop_pipeline_execution(self.pipeline_name, self.name)
        self.forget()
        if wait:
            deadline = time.monotonic() + timeout
            while not self.done and time.monotonic() < deadline:
                time.sleep(0.1)
        return self

    def snapshot(self, fetch=True):
        desc = self._description_for(fetch)
        if fetch is True:
            self.poll_logs()
        status = desc["PipelineExecutionStatus"]
        return Snapshot(kind=self.kind, name=self.name, backend=self.backend_name, status=status,
                        secondary_status=self._current_step(desc) or status, terminal=status in EXECUTION_TERMINAL,
                        created=desc.get("CreationTime"), ended=desc.get("EndTime") or (
                            desc.get("LastModifiedTime") if status in EXECUTION_TERMINAL else None),
                        failure_reason=desc.get("FailureReason"), local_folder=desc.get("LocalExecutionFolder"),
                        log_lines=self.log_lines, steps=tuple(self.steps()), edges=graph_edges(self.definition))

    def _current_step(self, desc):
        running = [s["StepName"] for s in desc.get("Steps") or [] if s.get("StepStatus") in ("Starting", "Executing")]
        return ", ".join(running) if running else None

    def summary(self):
        snap = self.snapshot(fetch="if-stale")
        done = sum(1 for s in snap.steps if s.get("StepStatus") == "Succeeded")
        # once it has ended, the branch a condition did not take never runs: count what ran
        total = len(snap.steps) if snap.terminal else len(step_order(self.definition))
        text = (f"pipeline execution {self.name} of {self.pipeline_name} ({self.backend_name}): {snap.status} · "
                f"{done}/{total} steps succeeded · {snap.elapsed():.1f}s")
        if snap.failure_reason and snap.status == "Failed":
            text += f" · {snap.failure_reason.splitlines()[0]}"
        return text
