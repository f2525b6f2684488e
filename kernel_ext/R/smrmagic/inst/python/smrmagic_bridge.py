"""The R package's side of reticulate: call sm_r_magic with Python's stdout going to the R console, and turn
exceptions into values R can read (one-line messages in R's words, the failed handle) instead of Python
tracebacks."""

import inspect
import json
import sys
import threading

from smrmagic_wording import r_words

# Lines of sm-r-magic itself (not the job's output) are reworded for R: "[sm-r-magic] detached ... %r_attach".
_OWN_LINES = ("[sm-r-magic]", "sm-r-magic:")


class RConsole:
    """A text stream that writes through an R function: progress lines show in RStudio, IRkernel and knitr
    (which capture R's output, not file descriptor 1). Writes from other threads go to the real stdout,
    because R functions may only be called on R's main thread."""

    def __init__(self, write, fallback):
        self._write = write
        self._fallback = fallback
        self._main = threading.current_thread()

    def write(self, text):
        if not text:
            return 0
        shown = r_words(text) if text.startswith(_OWN_LINES) else text
        if threading.current_thread() is self._main:
            self._write(shown)
        elif self._fallback is not None:
            self._fallback.write(shown)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False

    @property
    def encoding(self):
        return "utf-8"


class Outcome:
    """ok: bool; value: the result; kind/message: the exception's class and one-line message; handle: the
    failed job or endpoint of a JobFailed; status: the HTTP status of an InvocationError."""

    def __init__(self, ok, value=None, kind=None, message=None, handle=None, status=None, detail=None):
        self.ok, self.value, self.kind, self.message = ok, value, kind, message
        self.handle, self.status, self.detail = handle, status, detail


def call(write, write_err, fn, *args, **kwargs):
    """fn(*args, **kwargs) with sys.stdout and sys.stderr written through R functions, as an Outcome."""
    from sm_r_magic.errors import JobFailed, SmRMagicError

    old_out, old_err = sys.stdout, sys.stderr
    if write is not None:
        sys.stdout = RConsole(write, old_out)
    if write_err is not None:
        sys.stderr = RConsole(write_err, old_err)
    try:
        return Outcome(True, fn(*args, **kwargs))
    except JobFailed as exc:
        job = exc.job
        reason = job.failure_reason or ""
        first = next((line.strip() for line in reason.splitlines() if line.strip()), "")
        message = f"{_failed_what(job)} failed" + (f": {first}" if first else "")
        return Outcome(False, kind="JobFailed", message=message, handle=job, detail=reason)
    except SmRMagicError as exc:
        return Outcome(False, kind="SmRMagicError", message=r_words(str(exc)))
    except KeyboardInterrupt:
        return Outcome(False, kind="KeyboardInterrupt", message="interrupted")
    except Exception as exc:  # noqa: BLE001 - every Python error reaches R as an R error
        status = getattr(exc, "status", None)
        kind = type(exc).__name__
        if kind == "InvocationError":
            return Outcome(False, kind=kind, message=str(exc), status=status, detail=getattr(exc, "body", None))
        return Outcome(False, kind=kind, message=f"{kind}: {exc}")
    finally:
        sys.stdout, sys.stderr = old_out, old_err


def _failed_what(handle):
    """endpoint NAME, training job NAME, pipeline execution ID of PIPELINE."""
    if handle.kind == "endpoint":
        return f"endpoint {handle.name}"
    if handle.kind == "pipeline":
        return f"pipeline execution {handle.name} of {handle.pipeline_name}"
    return f"{handle.kind} job {handle.name}"


def keyword_arguments(fn):
    """{"names": the keyword arguments `fn` accepts (None when a **kwargs takes any name), "flags": those
    whose default is True or False}."""
    parameters = list(inspect.signature(fn).parameters.values())
    named = [p for p in parameters
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return {"names": None if takes_any else [p.name for p in named],
            "flags": [p.name for p in named if isinstance(p.default, bool)]}


def check_arguments(packages=None, metrics=None, hyperparameters=None):
    """What the magics check while parsing their options and the API takes as given: R package names, metric
    regexes and reserved hyperparameter names (sm_r_magic.parsing, so both front ends refuse the same)."""
    from sm_r_magic import parsing

    if packages:
        parsing.parse_packages(",".join(packages))
    if metrics:
        parsing.parse_metrics([f"{name}={regex}" for name, regex in metrics.items()])
    if hyperparameters:
        parsing.parse_hyperparameters(json_text=json.dumps(dict(hyperparameters)))


def _allowed(trait):
    values = getattr(trait, "values", None)
    if values:
        return "one of " + ", ".join(f'"{v}"' for v in values)
    kind = type(trait).__name__
    return {"Int": "a whole number", "Bool": "TRUE or FALSE", "Unicode": "one string"}.get(kind, kind)


def _r_value(value):
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def set_settings(cfg, values):
    """sm_config(...): set RMagic traits, coercing R numbers for Int traits; returns the settings."""
    from traitlets import Int

    from sm_r_magic.errors import SmRMagicError

    known = set(cfg.trait_names(config=True))
    for name, value in values.items():
        if name not in known:
            raise SmRMagicError(f"unknown setting `{name}` to sm_config(): known settings are "
                                f"{', '.join(sorted(known))}")
        trait = cfg.traits()[name]
        if isinstance(trait, Int) and isinstance(value, float) and value.is_integer():
            value = int(value)
        try:
            setattr(cfg, name, value)
        except Exception:  # TraitError: say which setting and what is allowed, in R's words
            raise SmRMagicError(f"sm_config({name} = {_r_value(value)}) is not valid: {name} takes "
                                f"{_allowed(trait)}") from None
    return cfg.describe()


def body_bytes(data):
    """An R raw vector (bytearray) or a string as request bytes."""
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


def invoke(predictor, body, content_type, accept):
    """(response as bytearray -> an R raw vector, the response's content type)."""
    response, response_type = predictor.invoke(body_bytes(body), content_type, accept)
    return bytearray(response), response_type or accept or content_type


def job_table(handles):
    """Columns for sm_jobs()/sm_endpoints(): one description per handle, errors shown as the status."""
    rows = {"name": [], "kind": [], "backend": [], "status": [], "elapsed": []}
    for handle in handles:
        try:
            status, elapsed = handle.status, float(handle.elapsed)
        except Exception as exc:  # noqa: BLE001
            status, elapsed = f"unknown ({exc})", float("nan")
        rows["name"].append(handle.name)
        rows["kind"].append(handle.kind)
        rows["backend"].append(handle.backend_name)
        rows["status"].append(status)
        rows["elapsed"].append(elapsed)
    return rows


# -- pipelines and the model registry ---------------------------------------------------------------------------

def _epoch(value):
    """A datetime (or epoch seconds) as epoch seconds for R's POSIXct; None stays None."""
    if value is None or value == "":
        return None
    if hasattr(value, "timestamp"):
        return value.timestamp()
    return float(value)


def pipeline_text(pipe):
    """A Pipeline's description, in R's words."""
    return r_words(pipe.describe_text())


def definition_json(pipe, backend=None):
    return json.dumps(pipe.definition(backend=backend), indent=2, default=str)


def execution_steps(execution):
    """Columns for an execution's $steps: one row per step that started, in the definition's order."""
    rows = {"step": [], "type": [], "status": [], "started": [], "ended": [], "job": [], "cached": [],
            "outcome": [], "failure_reason": []}
    for step in execution.steps():
        metadata = step.get("Metadata") or {}
        job = metadata.get("TrainingJob") or metadata.get("ProcessingJob") or {}
        rows["step"].append(step["StepName"])
        rows["type"].append(step.get("StepType") or next(iter(metadata), None))
        rows["status"].append(step.get("StepStatus"))
        rows["started"].append(_epoch(step.get("StartTime")))
        rows["ended"].append(_epoch(step.get("EndTime")))
        rows["job"].append(job.get("Arn", "").rsplit("/", 1)[-1] or None)
        rows["cached"].append(bool(step.get("CacheHitResult")))
        rows["outcome"].append((metadata.get("Condition") or {}).get("Outcome"))
        rows["failure_reason"].append(step.get("FailureReason"))
    return rows


def step_job(execution, step_name):
    """The job a step ran; a step that ran none (or has not started) is one line for R."""
    from sm_r_magic.errors import SmRMagicError

    try:
        return execution.step_job(step_name)
    except ValueError as exc:
        raise SmRMagicError(str(exc)) from None


def execution_table(executions):
    """Columns for sm_executions(): one row per execution."""
    rows = {"execution": [], "pipeline": [], "backend": [], "status": [], "created": [], "elapsed": []}
    for execution in executions:
        try:
            status, elapsed = execution.status, float(execution.elapsed)
        except Exception as exc:  # noqa: BLE001 - one unreadable execution must not hide the others
            status, elapsed = f"unknown ({exc})", float("nan")
        rows["execution"].append(execution.name)
        rows["pipeline"].append(execution.pipeline_name)
        rows["backend"].append(execution.backend_name)
        rows["status"].append(status)
        rows["created"].append(_epoch(execution.created))
        rows["elapsed"].append(elapsed)
    return rows


def _metric_numbers(value, prefix=""):
    """{"regression_metrics.rmse.value": 0.21, ...}: every number of a (nested) metrics report."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):
        return {prefix: float(value)}
    found = {}
    if isinstance(value, dict):
        for key, inner in value.items():
            found.update(_metric_numbers(inner, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found.update(_metric_numbers(inner, f"{prefix}[{i}]"))
    return found


def model_table(group, packages):
    """Columns for sm_models(): one row per version (newest first, as the API lists them), then one column per
    number of the metrics report."""
    rows = {"package": [], "version": [], "approval": [], "created": [], "execution": [], "model_data": []}
    metrics = [_metric_numbers(p.get("Metrics") or {}) for p in packages]
    names = sorted({name for found in metrics for name in found})
    for package in packages:
        container = ((package.get("InferenceSpecification") or {}).get("Containers") or [{}])[0]
        generated_by = (package.get("MetadataProperties") or {}).get("GeneratedBy") or ""
        rows["package"].append(f"{group}/{package['ModelPackageVersion']}")
        rows["version"].append(int(package["ModelPackageVersion"]))
        rows["approval"].append(package["ModelApprovalStatus"])
        rows["created"].append(_epoch(package.get("CreationTime")))
        rows["execution"].append(generated_by.rsplit("/", 1)[-1] or None)
        rows["model_data"].append(container.get("ModelDataUrl"))
    return {"columns": rows, "metrics": {name: [found.get(name) for found in metrics] for name in names}}
