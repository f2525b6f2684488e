"""The pipeline a user makes from the cells they ran (issue 13: the cells become the pipeline).

    pipe = sm_r_magic.pipeline("mtcars", steps=[prep, fit, ev], register="mtcars-models", inference="serve.R",
                               condition="evaluate.evaluation/evaluation.json:regression_metrics.rmse.value <= 3.5")
    pipe.definition()                    # the JSON CreatePipeline takes (workflow/definition.py builds it)
    run = pipe.run(parameters={"raw": "data/new.csv"})    # a PipelineExecution, watched like a job

Everything is checked when the Pipeline is made (the steps, the condition against what the steps wrote, the
registration and its inference code), before anything exists. A Pipeline remembers its cells' handles and the
inference code as it was then; each run builds the definition from them again. API layer: it may choose views,
never IPython."""

import os
import re

from . import config as config_module
from . import rtools, sourcedir, views
from .backends import get_backend
from .config import BACKENDS
from .contract import ENV_PROGRAM, ENV_SUBMIT_DIRECTORY, FOLDER_BACKENDS, INFERENCE_PROGRAM
from .errors import JobFailed, SmRMagicError
from .jobs import Job
from .workflow import definition as definitions
from .workflow import graph, names, retarget
from .uris import is_s3, path_of

SAVED_PROGRAMS = ("deploy.R", INFERENCE_PROGRAM)  # what serving looks for in the code saved with a model
_MODEL_FN = re.compile(r"^\s*[`'\"]?model_fn[`'\"]?\s*(<<?-|=)", re.MULTILINE)


def _config():
    return config_module.current()


class Pipeline:
    """A pipeline made from job handles. `definition(backend=None)` is its CreatePipeline JSON; `run(...)` starts
    an execution on the backend its cells ran on (or the one given) and returns its handle."""

    def __init__(self, name, steps, *, condition=None, register=None, inference=None, fail_message=None,
                 cache=None, model_step=None, backend=None):
        self.name = names.check_pipeline_name(name)
        self.steps = _checked_steps(steps)
        self.source = get_backend(self.steps[0].backend_name, _config())  # where the cells ran
        self._backend = _checked_backend_name(backend, "backend")
        self.condition = condition
        self.register = register
        self.model_step = model_step
        self.fail_message = fail_message
        self.cache = cache
        if inference is not None and register is None:
            raise SmRMagicError("--inference names the code registered versions are served with: it goes with "
                                "--register GROUP")
        if register is not None:
            _check_model_step(register, self.steps, model_step)
        self.inference = _Inference.of(inference, self.source, self._model_job()) if register else None
        self._build()  # every other check (cycle, condition, names), before anything exists

    # -- the definition ------------------------------------------------------------------------------------
    def _model_job(self):
        training = [job for job in self.steps if job.kind == "training"]
        chosen = [job for job in training if job.base_name == self.model_step] if self.model_step else training
        return chosen[0]

    def _register(self):
        if self.register is None:
            return None
        inference = self.inference
        return definitions.Register(group=self.register, model_step=self.model_step, code_uri=inference.code_uri,
                                    program=inference.program, environment=inference.environment)

    def _build(self):
        return definitions.build(self.steps, condition=self.condition, register=self._register(),
                                 fail_message=self.fail_message, cache=self.cache, file_exists=_file_exists)

    @property
    def backend_name(self):
        """Where run() runs it by default: the backend it was made with, else where its cells ran."""
        return self._backend or self.source.name

    def _target(self, backend):
        return get_backend(_checked_backend_name(backend, "backend") or self.backend_name, _config())

    def _for_target(self, target, definition, store_code):
        """The definition as `target` runs it: unchanged between local and docker (one local root and code
        store), retargeted to SageMaker (code and data staged to S3: workflow/retarget.py) -> (definition,
        what must be uploaded first)."""
        if target.name == self.source.name or {target.name, self.source.name} <= set(FOLDER_BACKENDS):
            return definition, ()
        if self.source.name not in FOLDER_BACKENDS:
            raise SmRMagicError(f"pipeline {self.name} is made of {self.source.name} cells: it runs on "
                                f"{self.source.name} (run the cells on {target.name} to run it there)")
        if store_code and self.inference is not None:
            self.inference.store(self.source)  # retargeting stages it from the local code store
        return retarget.retarget(definition, self.source, target)

    def definition(self, backend=None):
        """The definition dict (Version 2020-12-01) CreatePipeline takes, for `backend` (default: where the cells
        ran, or the backend the pipeline was made with)."""
        target = self._target(backend)
        return self._for_target(target, self._build(), store_code=target.name not in FOLDER_BACKENDS)[0]

    @property
    def parameters(self):
        """Parameter name -> default value (each data input no step writes: its cell's value)."""
        return {p["Name"]: p.get("DefaultValue") for p in self._build().get("Parameters") or []}

    # -- running -------------------------------------------------------------------------------------------
    def run(self, parameters=None, backend=None, wait=None, progress=None):
        """Start an execution (parameters: name -> value, replacing the cells' inputs) and, unless wait=False,
        show its progress until it ends. Returns its PipelineExecution; a failed execution raises JobFailed
        with the failed step's R error."""
        cfg = _config()
        target = self._target(backend)
        definition = self._build()
        self.check_parameters(parameters, backend, definition)
        target.check_ready()
        if self.inference is not None:
            self.inference.store(self.source)
        definition, staged = self._for_target(target, definition, store_code=False)
        if staged:
            target.upload(None, staged)
        execution = target.start_pipeline(self.name, definition, parameters)
        return _show(execution, wait=cfg.wait if wait is None else wait, progress=progress or cfg.progress)

    def check_parameters(self, parameters, backend=None, definition=None):
        """One line, before anything exists, for a name this pipeline does not have (or, locally, a path that
        does not exist)."""
        definition = definition or self._build()
        definitions.declared_parameters(definition, parameters)
        target = self._target(backend)
        if target.name in FOLDER_BACKENDS:
            definitions.resolve_parameters(definition, parameters, target)

    def executions(self, backend=None):
        """This pipeline's executions on a backend (default: where it runs), oldest first."""
        return self._target(backend).list_pipeline_executions(self.name)

    # -- showing -------------------------------------------------------------------------------------------
    def describe_text(self):
        definition = self._build()
        lines = [f"pipeline {self.name} ({len(self.steps)} cells on {self.source.name}"
                 + (f", runs on {self.backend_name}" if self.backend_name != self.source.name else "") + ")"]
        job_steps = []
        for step in definition["Steps"]:
            if step["Type"] in ("Processing", "Training"):
                after = sorted(graph.dependencies(step))
                job_steps.append(f"{step['Name']} ({step['Type'].lower()}{', after ' if after else ''}"
                                 f"{', '.join(after)})")
        lines.append("  steps: " + ", ".join(job_steps))
        if self.condition:
            lines.append(f"  condition: {self.condition}")
        if self.register:
            lines.append(f"  {'if it holds, ' if self.condition else ''}register the model of "
                         f"{self._model_job().base_name} into {self.register} (served by {self.inference.label})")
        if self.fail_message is not None:
            lines.append(f"  else fail: {self.fail_message or 'the condition was false'}")
        if self.cache:
            lines.append(f"  cache: {self.cache}")
        for param in definition.get("Parameters") or []:
            lines.append(f"  parameter {param['Name']} = {param.get('DefaultValue')}")
        lines.append("  .run(parameters={...}) starts an execution; .definition() is the CreatePipeline JSON")
        return "\n".join(lines)

    def __repr__(self):
        return f"<Pipeline {self.describe_text()}>"

    def _repr_pretty_(self, printer, cycle):
        printer.text(self.describe_text())


# -- checks ------------------------------------------------------------------------------------------------
def _checked_steps(steps):
    if isinstance(steps, Job):
        steps = [steps]
    steps = list(steps or ())
    if not steps:
        raise SmRMagicError("a pipeline needs at least one step: give the handles of the cells to chain, "
                            "e.g. steps=[prep, fit, ev] (--steps prep,fit,ev)")
    for step in steps:
        if not isinstance(step, Job):
            raise SmRMagicError(f"step {step!r} is not a job handle of this session: give the handles your "
                                "%%r_processing / %%r_train cells stored (--as VAR, or the variable of --name)")
    backends = sorted({job.backend_name for job in steps})
    if len(backends) > 1:
        where = "; ".join(f"{b}: {', '.join(j.base_name for j in steps if j.backend_name == b)}" for b in backends)
        raise SmRMagicError(f"the steps ran on different backends ({where}): run the cells on one backend")
    return steps


def _checked_backend_name(name, option):
    if name is None or name == "":
        return None
    if str(name).lower() not in BACKENDS:
        raise SmRMagicError(f"{option} {name!r}: use local, docker or sagemaker")
    return str(name).lower()


def _check_model_step(group, steps, model_step):
    """--register needs one training step, or --model-step naming one of several."""
    names.check_group_name(group)
    training = [job.base_name for job in steps if job.kind == "training"]
    if not training:
        raise SmRMagicError(f"--register {group} needs a training step: add the %%r_train cell whose model is "
                            "registered to the steps")
    if model_step is not None and model_step not in training:
        raise SmRMagicError(f"--model-step {model_step!r} is not a training step of this pipeline (training "
                            f"steps: {', '.join(training)})")
    if model_step is None and len(training) > 1:
        raise SmRMagicError(f"--register {group}: there are {len(training)} training steps "
                            f"({', '.join(training)}): say whose model to register with --model-step "
                            f"{training[-1]} (model_step= in Python)")


def _file_exists(uri):
    """Did the step's last run write the condition's report? Checked where it is local; S3 is not listed."""
    return True if is_s3(uri) else os.path.exists(path_of(uri))


class _Inference:
    """The inference code registered versions are served with: the code saved with the model (label "the code
    saved with the model"), an R file defining model_fn (packaged as inference.R), or a %%r_deploy handle's."""

    def __init__(self, label, code_uri=None, program=INFERENCE_PROGRAM, environment=None, code=None):
        self.label = label
        self.code_uri = code_uri
        self.program = program
        self.environment = dict(environment or {})
        self.code = code  # an R file's text, as it was when the pipeline was made

    @classmethod
    def of(cls, inference, source, model_job):
        if inference is None:
            _check_saved_code(model_job)
            return cls("the code saved with the model")
        if getattr(inference, "kind", None) == "endpoint":
            return cls._of_endpoint(inference, source)
        if isinstance(inference, (str, os.PathLike)):
            return cls._of_file(os.fspath(inference), source)
        raise SmRMagicError(f"--inference {inference!r}: give an R file defining model_fn, or a %%r_deploy handle")

    @classmethod
    def _of_endpoint(cls, predictor, source):
        try:
            container = predictor.backend.endpoint_model_request(predictor.endpoint_name)["PrimaryContainer"]
        except NotImplementedError:
            raise SmRMagicError(f"--inference {predictor.endpoint_name}: the code of a {predictor.backend_name} "
                                "endpoint cannot be read here: give its R file") from None
        environment = dict(container.get("Environment") or {})
        code_uri = environment.pop(ENV_SUBMIT_DIRECTORY, None)
        program = environment.pop(ENV_PROGRAM, INFERENCE_PROGRAM)
        if code_uri and is_s3(code_uri) != (source.name not in FOLDER_BACKENDS):
            raise SmRMagicError(f"--inference {predictor.endpoint_name}: a {predictor.backend_name} endpoint's code "
                                f"cannot serve versions registered from {source.name} cells: give its R file")
        label = f"the code of endpoint {predictor.endpoint_name}" if code_uri else "the code saved with the model"
        return cls(label, code_uri=code_uri, program=program, environment=environment)

    @classmethod
    def _of_file(cls, path, source):
        if not os.path.isfile(path):
            raise SmRMagicError(f"--inference {path}: no such R file: give an R file defining model_fn(model_dir), "
                                "or a %%r_deploy handle")
        try:
            with open(path, encoding="utf-8") as fh:
                code = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise SmRMagicError(f"--inference {path}: cannot read it as UTF-8 text ({exc})") from None
        cfg = _config()
        if rtools.find_rscript(cfg.rscript):
            try:
                rtools.check_syntax(code, cfg.rscript)
            except SmRMagicError as exc:
                raise SmRMagicError(f"--inference {path}: {exc}") from None
        if not _MODEL_FN.search(code):
            raise SmRMagicError(f"--inference {path} defines no model_fn: write model_fn <- function(model_dir) "
                                "... (and optionally input_fn, predict_fn, output_fn) in it")
        inference = cls(f"{os.path.basename(path)} as {INFERENCE_PROGRAM}", code=code)
        with sourcedir.build(INFERENCE_PROGRAM, code) as src:
            inference.code_uri = source.code_uri(src)
        return inference

    def store(self, backend):
        """Put an R file's inference code where the definition says it is (content-addressed: once)."""
        if self.code is None:
            return
        with sourcedir.build(INFERENCE_PROGRAM, self.code) as src:  # the same text packs to the same archive
            backend.upload(src)


def _check_saved_code(job):
    """Without --inference, versions are served by the code saved with the model (the training code, copied to
    model/code/): it must hold deploy.R or inference.R, or the model.tar.gz of the cell's run must."""
    found = job.backend.code_files(job.code_uri) if job.code_uri else None
    model = job.model_data
    if sourcedir.saved_code_serves(found, path_of(model) if model and not is_s3(model) else None, SAVED_PROGRAMS):
        return
    raise SmRMagicError(f"--register: the model of {job.base_name} would be served by the code saved with it "
                        f"({', '.join(sorted(found)) or 'none'}), which has no {' or '.join(SAVED_PROGRAMS)}: give "
                        "--inference FILE.R (defining model_fn) or a %%r_deploy handle")


# -- waiting -----------------------------------------------------------------------------------------------
def _show(execution, *, wait, progress):
    """Watch the execution with a progress view (the pipeline widget in a notebook, text lines elsewhere), or
    show it and return at once; a failed execution raises JobFailed with the failed step's R error."""
    if not wait:
        views.show_async(execution, progress=progress)
        return execution
    view = views.make_view(execution, progress)
    views.watch_with(view, execution)
    if execution.done and execution.status == "Failed":
        raise JobFailed(execution, reason_shown=bool(getattr(view, "reason_shown", False)))
    return execution
