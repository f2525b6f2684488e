"""A pipeline built from the cells a user ran, made to run on another backend unchanged.

definition.build() writes each step's Arguments from the request its cell sent, so a pipeline built from local
or docker cells names that backend's world: the code as <local_root>/sourcedir/<sha256>/sourcedir.tar.gz, data
parameters' defaults as local paths, per-execution outputs under <local_root>/output, the local image tag, no
role. retarget() turns it into the same steps as the sagemaker backend would have sent them: code and data
content-addressed in S3 (the S3 locations the sagemaker backend gives the same files, so they are uploaded once
ever), outputs under its output root, its image and role. Only hashing happens here; uploading is the caller's.
"""

import copy
import json
import os

from .. import aws, limits
from ..contract import CODE_INPUT, ENV_SUBMIT_DIRECTORY, FOLDER_BACKENDS, HP_SUBMIT_DIRECTORY, OPT_ML
from ..errors import SmRMagicError
from ..uris import is_s3, local_path
from . import expressions, graph

EXECUTION_ID = {"Get": "Execution.PipelineExecutionId"}
OPERATION = {"Processing": "CreateProcessingJob", "Training": "CreateTrainingJob",
             "RegisterModel": "CreateModelPackage"}
JOB_NAME_KEY = {"Processing": "ProcessingJobName", "Training": "TrainingJobName"}
PLACEHOLDER = "s3://resolved-when-the-step-runs/value"


def retarget(definition, source_backend, target_backend):
    """The definition `definition.build()` made from cells that ran on `source_backend`, as `target_backend`
    runs it -> (definition, staged).

    From local or docker cells to sagemaker, every Processing and Training step's Arguments are the request
    the sagemaker backend would have sent for that cell:
      - the code (the `code` processing input, the `sagemaker_submit_directory` hyperparameter) is the same
        sourcedir.tar.gz content-addressed in S3 (`s3://<bucket>/<prefix>/sourcedir/<sha256>/sourcedir.tar.gz`);
      - local data (parameters' defaults, literal inputs and channels) is staged like a cell's --input
        (`.../data/<sha256>/<name>`), a local model.tar.gz like --model (`.../models/<sha256>/...`);
      - outputs at local locations go under the backend's output root, per execution
        (`Std:Join [s3://<bucket>/<prefix>/output, Execution.PipelineExecutionId, <step>, <output>]`; training:
        `[..., <step>]`); s3:// outputs stay where they are; a local checkpoint folder moves to
        `.../checkpoints/<step>`;
      - image and RoleArn are the sagemaker backend's;
    and each RegisterModel container gets that image (unless it names an ECR image of its own) with its
    inference code (SAGEMAKER_SUBMIT_DIRECTORY) staged like the steps' code. Step names, references, the
    condition, CacheConfig and everything else are kept as they are.

    staged: the uris.Staged values of the local files the new definition names in S3. Nothing is uploaded
    here (a dry run uploads nothing): upload them with `target_backend.upload(None, staged)` before
    `target_backend.start_pipeline(...)`; files already in S3 are skipped, so a second run uploads nothing.

    Between local and docker, and from a backend to itself: an unchanged copy and no staged items (the
    Pipeline refuses to move sagemaker cells to a local backend before asking).

    A missing code or data file, a sagemaker backend without image or role, or a step SageMaker would refuse
    is one SmRMagicError line; nothing is uploaded or created.
    """
    moved = copy.deepcopy(definition)
    if source_backend.name == target_backend.name or target_backend.name != "sagemaker" \
            or source_backend.name not in FOLDER_BACKENDS:
        return moved, []
    graph.check(moved)
    mover = _ToSageMaker(target_backend)
    mover.move(moved)
    check_step_arguments(moved)
    return moved, list(mover.staged.values())


def _is_local(value):
    return isinstance(value, str) and not is_s3(value) and ("://" not in value or value.startswith("file://"))


def _local_location(value):
    """An output location on this machine: a path, or a Std:Join whose first part is one."""
    if isinstance(value, dict) and "Std:Join" in value:
        parts = value["Std:Join"].get("Values") or []
        return bool(parts) and _is_local(parts[0])
    return _is_local(value)


def _join(*values):
    return {"Std:Join": {"On": "/", "Values": list(values)}}


class _ToSageMaker:
    def __init__(self, target):
        self.target = target
        self.image = target.image()
        self.role = target.role()
        self.output_root = target.training_output_path().rstrip("/")
        self.staged = {}  # S3 URI -> uris.Staged
        self.job_images = set()

    def move(self, definition):
        steps = graph.all_steps(definition)
        for name, (step, _, _) in steps.items():
            arguments = step.get("Arguments") or {}
            if step.get("Type") == "Processing":
                self._processing(name, arguments)
            elif step.get("Type") == "Training":
                self._training(name, arguments)
        for name, (step, _, _) in steps.items():
            if step.get("Type") == "RegisterModel":
                self._register(name, step.get("Arguments") or {})
        for parameter in definition.get("Parameters") or []:
            if _is_local(parameter.get("DefaultValue")):
                parameter["DefaultValue"] = self._data(parameter["DefaultValue"],
                                                       f"pipeline parameter {parameter['Name']}")

    def _stage(self, item):
        self.staged.setdefault(item.uri, item)
        return item.uri

    def _data(self, path, what):
        return self._stage(self.target.data_uri(path, what))

    def _code(self, path, step):
        found = local_path(path, f"step {step}", must_exist=False)
        if not os.path.isfile(found):
            raise SmRMagicError(f"step {step}: its code {found} is gone (was the local root cleaned?): run its "
                                "cell again and build the pipeline again")
        return self._stage(self.target.code_file_uri(found))

    def _processing(self, step, arguments):
        app = arguments.setdefault("AppSpecification", {})
        self.job_images.add(app.get("ImageUri"))
        app["ImageUri"] = self.image
        arguments["RoleArn"] = self.role
        for item in arguments.get("ProcessingInputs") or []:
            source = item.get("S3Input") or {}
            if _is_local(source.get("S3Uri")):
                name = item.get("InputName")
                source["S3Uri"] = self._code(source["S3Uri"], step) if name == CODE_INPUT else \
                    self._data(source["S3Uri"], f"step {step} input {name}")
        for output in (arguments.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            target = output.get("S3Output") or {}
            if _local_location(target.get("S3Uri")):
                target["S3Uri"] = _join(self.output_root, EXECUTION_ID, step, output["OutputName"])

    def _training(self, step, arguments):
        algorithm = arguments.setdefault("AlgorithmSpecification", {})
        self.job_images.add(algorithm.get("TrainingImage"))
        algorithm["TrainingImage"] = self.image
        arguments["RoleArn"] = self.role
        hyperparameters = arguments.get("HyperParameters") or {}
        if HP_SUBMIT_DIRECTORY in hyperparameters:
            code = _decoded(hyperparameters[HP_SUBMIT_DIRECTORY])
            if _is_local(code):
                hyperparameters[HP_SUBMIT_DIRECTORY] = json.dumps(self._code(code, step))
        for channel in arguments.get("InputDataConfig") or []:
            source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
            if _is_local(source.get("S3Uri")):
                source["S3Uri"] = self._data(source["S3Uri"], f"step {step} channel {channel.get('ChannelName')}")
        output = arguments.get("OutputDataConfig")
        if output and _local_location(output.get("S3OutputPath")):
            output["S3OutputPath"] = _join(self.output_root, EXECUTION_ID, step)
        checkpoint = arguments.get("CheckpointConfig")
        if checkpoint and _is_local(checkpoint.get("S3Uri")):
            checkpoint["S3Uri"] = self.target.default_checkpoint_uri(step)

    def _register(self, step, arguments):
        for container in (arguments.get("InferenceSpecification") or {}).get("Containers") or []:
            image = container.get("Image")
            if image in self.job_images or not aws.ECR_URI.match(image or ""):
                container["Image"] = self.image
            if _is_local(container.get("ModelDataUrl")):
                container["ModelDataUrl"] = self._stage(self.target.model_data_uri(container["ModelDataUrl"]))
            environment = container.get("Environment") or {}
            code = environment.get(ENV_SUBMIT_DIRECTORY)
            if _is_local(code) and not code.startswith(OPT_ML + "/"):  # a path inside the container stays
                environment[ENV_SUBMIT_DIRECTORY] = self._code(code, step)


def _decoded(value):
    """A hyperparameter as the container reads it: JSON-decoded when it is JSON."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _placeholders(obj):
    """`obj` with every expression replaced by a stand-in URI (what a step's Get/Join becomes at run time)."""
    if expressions.is_expression(obj):
        return PLACEHOLDER
    if isinstance(obj, dict):
        return {key: _placeholders(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_placeholders(value) for value in obj]
    return obj


def check_step_arguments(definition):
    """Each Processing, Training and RegisterModel step's Arguments, with its expressions standing for URIs (and
    a job name added), checked against SageMaker's Create* request shapes and limits (botocore's model): what
    SageMaker would only refuse when the step runs is refused now, in one line naming the step."""
    for name, (step, _, _) in graph.all_steps(definition).items():
        operation = OPERATION.get(step.get("Type"))
        if not operation:
            continue
        request = _placeholders(step.get("Arguments") or {})
        if step["Type"] in JOB_NAME_KEY:
            request = {JOB_NAME_KEY[step["Type"]]: f"{name}-check", **request}
        try:
            limits.check(operation, request, on_sagemaker=True)
        except SmRMagicError as exc:
            raise SmRMagicError(f"pipeline step {name}: {exc}") from None
