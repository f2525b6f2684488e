"""Pipelines and the model registry of the local and docker backends: executions of the definition JSON run by
the local executor (folder_executions.py: a detached runner per execution, its state in a folder) and the
local model registry (local_registry.py), both under the local root:

    <local_root>/pipelines/<pipeline>/executions/<execution-id>/     one execution (its state names its backend)
    <local_root>/model-registry/<group>/versions/<N>/                one registered version

The local and docker backends share both folders: an execution is listed and attached by the backend it ran
on; a version registered by either is deployed by either. Answers are shaped like SageMaker's, so the handles
(workflow.execution.PipelineExecution, jobs.Job) and the API read every backend the same way."""

import os
import re

from ..errors import SmRMagicError
from . import folder_executions as executions

_EXECUTION_ID = re.compile(r"^[a-z0-9]{12}$")


class FolderPipelines:
    def __init__(self, backend):
        self.backend = backend

    @property
    def root(self):
        return self.backend.root  # a setting: it may change

    # -- executions ----------------------------------------------------------------------------------------
    def _execution(self, pipeline_name, execution_id, created=None):
        from ..workflow.execution import PipelineExecution

        return PipelineExecution(self.backend, pipeline_name, execution_id, created=created)

    def start(self, pipeline_name, definition, parameters=None):
        folder = executions.start(self.backend, pipeline_name, definition, parameters)
        return self._execution(pipeline_name, folder.execution_id)

    def folder(self, pipeline_name, execution_id):
        """The execution's folder; one line when it does not exist or ran on the other folder backend."""
        folder = executions.ExecutionFolder.of(self.root, pipeline_name, execution_id)
        state = folder.state() if folder.exists() else {}
        if state.get("Backend", self.backend.name) != self.backend.name:
            raise SmRMagicError(f"pipeline execution {execution_id} of {pipeline_name} ran on {state['Backend']}, "
                                f"not {self.backend.name}: attach it with backend={state['Backend']!r}")
        if not state:
            raise SmRMagicError(f"no {self.backend.name} pipeline execution {execution_id} of {pipeline_name} "
                                f"under {executions.pipelines_dir(self.root)}")
        return folder

    def describe(self, pipeline_name, execution_id):
        return executions.describe(self.folder(pipeline_name, execution_id))

    def steps(self, pipeline_name, execution_id):
        return executions.list_steps(self.folder(pipeline_name, execution_id))["PipelineExecutionSteps"]

    def stop(self, pipeline_name, execution_id):
        return executions.stop(self.folder(pipeline_name, execution_id))

    def definition(self, pipeline_name, execution_id):
        return self.folder(pipeline_name, execution_id).definition()

    def list(self, pipeline_name=None):
        """This backend's executions (of one pipeline, or of all), oldest first."""
        base = executions.pipelines_dir(self.root)
        if pipeline_name is not None:
            names = [pipeline_name]
        else:
            names = sorted(os.listdir(base)) if os.path.isdir(base) else []
        found = []
        for name in names:
            for summary in executions.list_executions(self.root, name)["PipelineExecutionSummaries"]:
                folder = executions.ExecutionFolder.of(self.root, name, summary["PipelineExecutionId"])
                if folder.state().get("Backend") == self.backend.name:
                    created = summary["StartTime"].timestamp() if summary.get("StartTime") else 0
                    found.append(self._execution(name, summary["PipelineExecutionId"], created=created))
        return sorted(found, key=lambda execution: execution.created)

    def find(self, execution_id):
        """This backend's execution of that id (any pipeline), or None."""
        if not _EXECUTION_ID.match(execution_id or ""):
            return None
        try:
            folder = executions.find(self.root, execution_id)
        except SmRMagicError:
            return None
        if folder.state().get("Backend") != self.backend.name:
            return None
        return self._execution(folder.pipeline, execution_id)
