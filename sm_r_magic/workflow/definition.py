"""The pipeline definition JSON (Version 2020-12-01, what CreatePipeline takes) built from the jobs a user ran.

Pure: from an ordered list of job handles (or plain dicts with the same fields) it writes one Processing or
Training step per job whose Arguments are the job's own request minus its name. The graph comes from
lineage: an input whose URI is another step's output becomes a property reference
(`{"Get": "Steps.prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}`, a model.tar.gz becomes
`{"Get": "Steps.fit.ModelArtifacts.S3ModelArtifacts"}`, a URI inside an output folder a `Std:Join`); every
other data input becomes a String Parameter whose default is its current URI; outputs go under a
per-execution prefix (`Execution.PipelineExecutionId`), so runs never overwrite each other. A condition adds a
Condition step over `Std:JsonGet` of a PropertyFile; `register` adds a RegisterModel step in its if-branch,
`fail_message` a Fail step in its else-branch; `cache` sets CacheConfig on every job step. docs/pipelines.md
describes the contract."""

import copy
import os
import json
from dataclasses import dataclass, field

from .. import spec
from ..contract import NAME_KEY
from ..errors import SmRMagicError
from ..uris import path_of
from . import condition as conditions
from . import durations, graph, names

VERSION = "2020-12-01"
MAX_DEFINITION_BYTES = 1048576  # CreatePipeline's PipelineDefinition
STEP_TYPE = {"processing": "Processing", "training": "Training"}
EXECUTION_ID = {"Get": "Execution.PipelineExecutionId"}
CONTENT_TYPES = ("text/csv", "application/json")


@dataclass(frozen=True)
class StepInfo:
    """What the definition needs from a job: its step name (the cell's --name), kind and request, and where
    its outputs are (processing: output name -> URI; training: the model.tar.gz URI)."""

    name: str
    kind: str
    request: dict
    outputs: dict = field(default_factory=dict)
    model_data: str = None


@dataclass(frozen=True)
class Register:
    """RegisterModel in the if-branch: the model of `model_step` (default: the only training step) into
    `group`, served by `image` (default: the training image) with the inference code at `code_uri` (a
    sourcedir.tar.gz; default: the code saved with the model)."""

    group: str
    model_step: str = None
    image: str = None
    code_uri: str = None
    program: str = spec.INFERENCE_PROGRAM
    environment: dict = None
    approval: str = "PendingManualApproval"
    description: str = None
    content_types: tuple = CONTENT_TYPES
    response_types: tuple = CONTENT_TYPES


def step_info(step):
    """A StepInfo from a job handle (sm_r_magic.jobs.Job) or a dict with the same fields."""
    if isinstance(step, StepInfo):
        return step
    get = step.get if isinstance(step, dict) else (lambda key, default=None: getattr(step, key, default))
    kind, request = get("kind"), get("request")
    if kind not in STEP_TYPE or not isinstance(request, dict):
        raise SmRMagicError(f"{step!r} is not a processing or training job: give the handles of the cells to "
                            "chain (--as NAME on %%r_processing / %%r_train)")
    name = get("base_name") or spec.base_name(request.get(NAME_KEY[kind], ""))
    if not names.STEP_NAME.fullmatch(name or ""):
        raise SmRMagicError(f"step name {name!r}: use letters, digits, '-' and '_' (the cell's --name)")
    outputs = dict(get("outputs") or {}) if kind == "processing" else {}
    if kind == "processing" and not outputs:
        outputs = {o["OutputName"]: o["S3Output"]["S3Uri"]
                   for o in request.get("ProcessingOutputConfig", {}).get("Outputs", [])}
    model_data = get("model_data") if kind == "training" else None
    if kind == "training" and not model_data:
        model_data = _model_artifact(request)
    return StepInfo(name=name, kind=kind, request=request, outputs=outputs, model_data=model_data)


def build(steps, *, condition=None, register=None, fail_message=None, cache=None, output_root=None,
          file_exists=None):
    """The definition dict. steps: job handles or dicts, in any order; condition: text (see condition.py);
    register: a Register or a group name; cache: a duration ('30d', 'PT12H'); output_root: where per-execution
    outputs go (default: where each job's outputs went); file_exists(uri) -> bool, if given, checks that the
    condition's report was written by the step's last run."""
    infos = [step_info(step) for step in steps or ()]
    if not infos:
        raise SmRMagicError("a pipeline needs at least one step: give the handles of the cells to chain")
    _check_unique([info.name for info in infos], "step", "give each cell its own --name")
    lineage = Lineage(infos)
    parameters = _parameters(infos, lineage)
    expire = durations.expire_after(cache, "cache") if cache else None
    cond = _checked_condition(condition, infos, file_exists)
    job_steps = {}
    for info in infos:
        job_steps[info.name] = _job_step(info, lineage, parameters, output_root, expire)
    if cond:
        job_steps[cond.step]["PropertyFiles"] = [cond.property_file_json()]
    steps_json = [job_steps[name] for name in graph.topological([job_steps[i.name] for i in infos])]
    if fail_message is not None and not cond:
        raise SmRMagicError("a fail message needs a condition: the Fail step runs when the condition is false")
    taken = set(job_steps)
    register_json = _register_step(register, infos, cond, taken) if register else None
    if cond:
        steps_json.append(_condition_step(cond, register_json, fail_message, taken))
    elif register_json:
        steps_json.append(register_json)
    definition = {"Version": VERSION, "Metadata": {},
                  "Parameters": [{"Name": name, "Type": "String", "DefaultValue": default}
                                 for name, default in parameters.defaults.items()],
                  "Steps": steps_json}
    graph.check(definition)
    size = len(to_json(definition).encode())
    if size > MAX_DEFINITION_BYTES:
        raise SmRMagicError(f"the pipeline definition is {size} bytes: SageMaker takes at most "
                            f"{MAX_DEFINITION_BYTES} (fewer steps, or shorter environments)")
    return definition


def to_json(definition):
    """The PipelineDefinition string."""
    return json.dumps(definition)


def check_create_pipeline(name, definition, role_arn=None):
    """Check a CreatePipeline request for this definition against botocore's model of the API (the name's
    pattern, the definition's size, the role's form)."""
    names.check_pipeline_name(name)
    params = {"PipelineName": name, "PipelineDefinition": to_json(definition) if isinstance(definition, dict)
              else definition, "RoleArn": role_arn or "arn:aws:iam::123456789012:role/placeholder"}
    return names.check_request("CreatePipeline", params)


# -- lineage ---------------------------------------------------------------------------------------------
def _norm(uri):
    return path_of(uri).rstrip("/") if isinstance(uri, str) else uri


class Lineage:
    """Which step wrote a URI: exact outputs (processing outputs, model artifacts, output.tar.gz) and
    folders whose contents an input may point into."""

    def __init__(self, infos):
        self.exact = {}    # normalized URI -> (step, reference)
        self.folders = []  # (normalized folder URI, step, reference)
        for info in infos:
            if info.kind == "processing":
                for output, uri in info.outputs.items():
                    ref = {"Get": f"Steps.{info.name}.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri"}
                    self._add(uri, info.name, ref, folder=True)
            elif info.model_data:
                self._add(info.model_data, info.name, {"Get": f"Steps.{info.name}.ModelArtifacts.S3ModelArtifacts"})
                self._add(_output_artifact(info.request), info.name, {"Std:Join": {"On": "/", "Values": [
                    {"Get": f"Steps.{info.name}.OutputDataConfig.S3OutputPath"},
                    {"Get": f"Steps.{info.name}.TrainingJobName"}, "output", "output.tar.gz"]}})

    def _add(self, uri, step, ref, folder=False):
        key = _norm(uri)
        if not key:
            return
        if key in self.exact and self.exact[key][0] != step:
            raise SmRMagicError(f"steps {self.exact[key][0]} and {step} both write {uri}: give one of them "
                                "another output location")
        self.exact[key] = (step, ref)
        if folder:
            self.folders.append((key, step, ref))

    def reference(self, uri, consumer):
        """(producing step, the reference that replaces `uri`) or None when no step wrote it."""
        key = _norm(uri)
        found = self.exact.get(key)
        if found is None:
            inside = [(folder, step, ref) for folder, step, ref in self.folders if key.startswith(folder + "/")]
            if inside:
                folder, step, ref = max(inside, key=lambda item: len(item[0]))
                found = (step, {"Std:Join": {"On": "/", "Values": [ref, key[len(folder) + 1:]]}})
        if found and found[0] == consumer:
            raise SmRMagicError(f"step {consumer} reads {uri}, which it writes itself: a step cannot depend on its "
                                "own output (give the input or the output another location)")
        return found


def _data_inputs(info):
    """(name, URI, setter) for every data input of a job's request; the setter replaces the URI in a copy."""
    if info.kind == "processing":
        for index, item in enumerate(info.request.get("ProcessingInputs", [])):
            if item.get("InputName") != spec.CODE_INPUT and "S3Input" in item:
                yield item["InputName"], item["S3Input"]["S3Uri"], ("ProcessingInputs", index, "S3Input", "S3Uri")
    else:
        for index, channel in enumerate(info.request.get("InputDataConfig", [])):
            source = channel.get("DataSource", {}).get("S3DataSource")
            if source:
                yield channel["ChannelName"], source["S3Uri"], \
                    ("InputDataConfig", index, "DataSource", "S3DataSource", "S3Uri")


class _Parameters:
    def __init__(self):
        self.defaults = {}  # parameter name -> default URI
        self.of_input = {}  # (step, input name) -> parameter name


def _parameters(infos, lineage):
    """One String parameter per data input no step wrote, named after the input; inputs of the same name
    with the same URI share one; with different URIs each is prefixed with its step's name."""
    uses = {}
    for info in infos:
        for name, uri, _ in _data_inputs(info):
            if lineage.reference(uri, info.name) is None:
                uses.setdefault(name, []).append((info.name, uri))
    params = _Parameters()
    for name, used in uses.items():
        if len({_norm(uri) for _, uri in used}) == 1:
            shared = _free_name(names.parameter_name(name), set(params.defaults))
            params.defaults[shared] = used[0][1]
            params.of_input.update({(step, name): shared for step, _ in used})
            continue
        for step, uri in used:
            own = _free_name(names.parameter_name(f"{step}_{name}"), set(params.defaults))
            params.defaults[own] = uri
            params.of_input[(step, name)] = own
    return params


def _job_step(info, lineage, parameters, output_root, expire):
    arguments = copy.deepcopy(info.request)
    arguments.pop(NAME_KEY[info.kind], None)
    for name, uri, where in _data_inputs(info):
        found = lineage.reference(uri, info.name)
        value = found[1] if found else {"Get": f"Parameters.{parameters.of_input[(info.name, name)]}"}
        _set(arguments, where, value)
    if info.kind == "processing":
        job_name = info.request.get(NAME_KEY["processing"], "")
        for output in arguments.get("ProcessingOutputConfig", {}).get("Outputs", []):
            output["S3Output"]["S3Uri"] = _execution_output(output["S3Output"]["S3Uri"], job_name, info.name,
                                                            output["OutputName"], output_root)
    elif "OutputDataConfig" in arguments:
        path = arguments["OutputDataConfig"]["S3OutputPath"]
        arguments["OutputDataConfig"]["S3OutputPath"] = {"Std:Join": {"On": "/", "Values": [
            (output_root or path).rstrip("/"), EXECUTION_ID, info.name]}}
    step = {"Name": info.name, "Type": STEP_TYPE[info.kind], "Arguments": arguments}
    if expire:
        step["CacheConfig"] = {"Enabled": True, "ExpireAfter": expire}
    return step


def _execution_output(uri, job_name, step, output, output_root):
    """A processing output under the per-execution prefix: a default location (<root>/<job>/<output>) becomes
    <root>/<execution id>/<step>/<output>; a location the user chose gets /<execution id> appended."""
    text = uri.rstrip("/")
    suffix = f"/{job_name}/{output}"
    if output_root or (job_name and text.endswith(suffix)):
        root = output_root or text[: -len(suffix)]
        return {"Std:Join": {"On": "/", "Values": [root.rstrip("/"), EXECUTION_ID, step, output]}}
    return {"Std:Join": {"On": "/", "Values": [text, EXECUTION_ID]}}


def _set(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


# -- condition, register, fail -------------------------------------------------------------------------
def _checked_condition(text, infos, file_exists):
    if text is None:
        return None
    cond = text if isinstance(text, conditions.Condition) else conditions.parse(text)
    by_name = {info.name: info for info in infos}
    info = by_name.get(cond.step)
    if info is None:
        raise SmRMagicError(f"condition {cond.text!r}: no step is named {cond.step!r} (steps: "
                            f"{', '.join(by_name)})")
    if info.kind != "processing":
        raise SmRMagicError(f"condition {cond.text!r}: {cond.step} is a {info.kind} step; a condition reads a "
                            "JSON file a processing step writes to one of its outputs (sm_report() in R)")
    if cond.output not in info.outputs:
        raise SmRMagicError(f"condition {cond.text!r}: step {cond.step} writes no output {cond.output!r} (its "
                            f"outputs: {', '.join(info.outputs) or 'none'})")
    if file_exists is not None:
        uri = info.outputs[cond.output].rstrip("/") + "/" + cond.file
        if not file_exists(uri):
            raise SmRMagicError(f"condition {cond.text!r}: the last run of {cond.step} wrote no {cond.file} to its "
                                f"output {cond.output} ({uri}): write it with sm_report(x, output = "
                                f"\"{cond.output}\", file = \"{cond.file}\")")
    return cond


def _condition_step(cond, register_json, fail_message, taken):
    """The Condition step: RegisterModel (if any) when it holds, Fail (if a message is given) when not."""
    else_steps = []
    if fail_message is not None:
        message = str(fail_message or f"the condition {cond.text} was false")
        else_steps.append({"Name": _free_name("fail", taken), "Type": "Fail", "Arguments": {"ErrorMessage": message}})
    return {"Name": _free_name("condition", taken), "Type": "Condition", "Arguments": {
        "Conditions": [cond.to_json()], "IfSteps": [register_json] if register_json else [],
        "ElseSteps": else_steps}}


def _register_step(register, infos, cond, taken):
    if isinstance(register, str):
        register = Register(group=register)
    names.check_group_name(register.group)
    names.check_approval(register.approval)
    training = [info for info in infos if info.kind == "training"]
    if register.model_step:
        chosen = [info for info in training if info.name == register.model_step]
        if not chosen:
            raise SmRMagicError(f"register: {register.model_step!r} is not a training step of this pipeline "
                                f"(training steps: {', '.join(i.name for i in training) or 'none'})")
    elif len(training) == 1:
        chosen = training
    elif not training:
        raise SmRMagicError("register needs a training step: add the %%r_train cell whose model is registered")
    else:
        raise SmRMagicError(f"register: there are {len(training)} training steps "
                            f"({', '.join(i.name for i in training)}): say which model to register")
    model = chosen[0]
    environment = dict(register.environment or {})
    if register.code_uri:
        environment.update(SAGEMAKER_SUBMIT_DIRECTORY=register.code_uri, SAGEMAKER_PROGRAM=register.program)
    container = {"Image": register.image or model.request["AlgorithmSpecification"]["TrainingImage"],
                 "ModelDataUrl": {"Get": f"Steps.{model.name}.ModelArtifacts.S3ModelArtifacts"},
                 "Environment": environment}
    arguments = {"ModelPackageGroupName": register.group,
                 "InferenceSpecification": {"Containers": [container],
                                            "SupportedContentTypes": list(register.content_types),
                                            "SupportedResponseMIMETypes": list(register.response_types)},
                 "ModelApprovalStatus": register.approval}
    if register.description:
        arguments["ModelPackageDescription"] = register.description
    if cond:
        report = {"Std:Join": {"On": "/", "Values": [
            {"Get": f"Steps.{cond.step}.ProcessingOutputConfig.Outputs['{cond.output}'].S3Output.S3Uri"},
            cond.file]}}
        arguments["ModelMetrics"] = {"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                                     "S3Uri": report}}}
    return {"Name": _free_name("register", taken), "Type": "RegisterModel", "Arguments": arguments}


def _free_name(wanted, taken):
    name, n = wanted, 2
    while name in taken:
        name, n = f"{wanted}-{n}", n + 1
    taken.add(name)
    return name


def _check_unique(values, what, advice):
    seen = set()
    for value in values:
        if value in seen:
            raise SmRMagicError(f"two {what}s are named {value}: {advice}")
        seen.add(value)


def _model_artifact(request):
    output = request.get("OutputDataConfig", {}).get("S3OutputPath")
    name = request.get(NAME_KEY["training"])
    return f"{output.rstrip('/')}/{name}/output/model.tar.gz" if output and name else None


def _output_artifact(request):
    model = _model_artifact(request)
    return model[: -len("model.tar.gz")] + "output.tar.gz" if model else None


def declared_parameters(definition, given):
    """The definition's parameters by name, and the given values as a dict; a given name the definition does
    not declare is one line."""
    declared = {p["Name"]: p for p in definition.get("Parameters") or []}
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise SmRMagicError(f"unknown pipeline parameter(s) {', '.join(unknown)}: this pipeline's parameters are "
                            f"{', '.join(declared) or 'none'}")
    return declared, given


def resolve_parameters(definition, given, backend=None):
    """The execution's parameter values: each parameter's default, replaced by the given value. An unknown
    name, or a parameter without default nor value, is one line. A value replacing a local path default is a
    local path too: checked and made absolute by the backend, as a cell's --input is."""
    declared, given = declared_parameters(definition, given)
    values = {}
    for name, param in declared.items():
        if name in given:
            value = given[name]
            value = os.fspath(value) if isinstance(value, os.PathLike) else value
            default = param.get("DefaultValue")
            if (backend is not None and isinstance(value, str) and isinstance(default, str)
                    and default.startswith("/") and not value.startswith("s3://")):
                value = backend.data_uri(value, f"parameter {name}")
            values[name] = value if param.get("Type", "String") != "String" else str(value)
        elif "DefaultValue" in param:
            values[name] = param["DefaultValue"]
        else:
            raise SmRMagicError(f"pipeline parameter {name} has no default: give parameters={{'{name}': ...}}")
    return values
