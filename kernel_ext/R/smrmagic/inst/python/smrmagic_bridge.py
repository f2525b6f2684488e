"""The R package's side of reticulate: call sm_r_magic with Python's stdout going to the R console, and turn
exceptions into values R can read (one-line messages, the failed handle) instead of Python tracebacks."""

import sys
import threading


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
        if threading.current_thread() is self._main:
            self._write(text)
        elif self._fallback is not None:
            self._fallback.write(text)
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
        what = "endpoint" if job.kind == "endpoint" else f"{job.kind} job"
        first = next((line.strip() for line in reason.splitlines() if line.strip()), "")
        message = f"{what} {job.name} failed" + (f": {first}" if first else "")
        return Outcome(False, kind="JobFailed", message=message, handle=job, detail=reason)
    except SmRMagicError as exc:
        return Outcome(False, kind="SmRMagicError", message=str(exc))
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


def set_settings(cfg, values):
    """sm_config(...): set RMagic traits, coercing R numbers for Int traits; returns the settings."""
    from traitlets import Int

    from sm_r_magic.errors import SmRMagicError

    known = set(cfg.trait_names(config=True))
    for name, value in values.items():
        if name not in known:
            raise SmRMagicError(f"unknown setting {name!r}: known settings are {', '.join(sorted(known))}")
        trait = cfg.traits()[name]
        if isinstance(trait, Int) and isinstance(value, float) and value.is_integer():
            value = int(value)
        try:
            setattr(cfg, name, value)
        except Exception as exc:  # TraitError: say which setting and what is allowed
            raise SmRMagicError(f"{name} = {value!r} is not valid: {exc}") from None
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
