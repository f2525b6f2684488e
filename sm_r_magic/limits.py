"""SageMaker's own limits, checked before anything is uploaded or created, on every backend.

The request dict is the contract: a request SageMaker would refuse fails everywhere, with one line naming
the option the user gave. The limits come from botocore's service model for SageMaker (lengths, ranges,
patterns, the instance-type enums of training, processing and endpoints), walked member by member, so
they follow botocore's updates. botocore itself only checks types, required members and minimums.

botocore is optional: without it (the local backend needs no AWS) nothing is checked. Importing botocore and
reading its 2 MB model takes ~0.2 s, so the shapes of the checked operations (~0.2 MB) are kept in a cache file
per botocore model file ($XDG_CACHE_HOME/sm-r-magic, ~1 ms to read; botocore is then not imported at all). The
model is read in a background thread started at %load_ext's warm-up and before R's syntax check.
"""

import difflib
import functools
import hashlib
import importlib.util
import json
import os
import re
import tempfile
import threading

from .errors import SmRMagicError

# What botocore's model leaves out but the service documents (the model has only "min": 1): the
# CreateTrainingJob documentation says "The maximum value is 28 days".
DOCUMENTED_MAXIMUMS = {("CreateTrainingJob", "StoppingCondition.MaxRuntimeInSeconds"): 28 * 24 * 3600}

# Locally these members hold this machine's paths, a local image tag, or nothing (no role): SageMaker's
# patterns for URIs, images and roles apply only to requests sent to SageMaker.
SAGEMAKER_ONLY = {"TrainingImage", "ImageUri", "Image", "S3Uri", "S3OutputPath", "ModelDataUrl", "RoleArn",
                  "ExecutionRoleArn"}

# The option a user gave for a request member, by the member's path ([] for list items, {} for map keys);
# {key} is the map key, {item} the list item's name. The first match wins.
OPTIONS = [
    (r"(TrainingJobName|ProcessingJobName|ModelName|EndpointConfigName|EndpointName)", "--name"),
    (r"HyperParameters\{\}", "--hp {key}"),
    (r"HyperParameters", "--hp/--hyperparameters"),
    (r"(PrimaryContainer\.)?Environment\{\}", "--env {key}"),
    (r"(PrimaryContainer\.)?Environment", "--env"),
    (r"InputDataConfig\[\].*", "--channel {item}"),
    (r"InputDataConfig", "--channel"),
    (r"ProcessingInputs\[\].*", "--input {item}"),
    (r"ProcessingInputs", "--input"),
    (r"ProcessingOutputConfig\.Outputs\[\].*", "--output {item}"),
    (r"ProcessingOutputConfig.*", "--output"),
    (r"AlgorithmSpecification\.MetricDefinitions\[\].*", "--metric {item}"),
    (r"AlgorithmSpecification\.MetricDefinitions", "--metric"),
    (r"(AlgorithmSpecification\.TrainingImage|AppSpecification\.ImageUri|PrimaryContainer\.Image)", "RMagic.image"),
    (r"(RoleArn|ExecutionRoleArn)", "RMagic.role"),
    (r"OutputDataConfig.*", "RMagic.bucket/RMagic.prefix"),
    (r"PrimaryContainer\.ModelDataUrl", "--model"),
    (r"ProductionVariants\[\]\.ServerlessConfig.*", "--serverless"),
    (r".*InstanceType", "--instance-type"),
    (r".*(InstanceCount|InitialInstanceCount)", "--instance-count"),
    (r".*VolumeSizeInGB", "--volume-size"),
    (r"StoppingCondition\.MaxRuntimeInSeconds", "--max-run"),
    (r"StoppingCondition\.MaxWaitTimeInSeconds", "--max-wait"),
    (r"ResourceConfig\.KeepAlivePeriodInSeconds", "--keep-alive"),
    (r"CheckpointConfig.*", "--checkpoint-uri"),
]
# Entries sm-r-magic itself puts in maps: the option or setting that fills them.
OWN_KEYS = {"SM_R_MAGIC_PACKAGES": "--packages", "SM_R_MAGIC_R_REPOS": "RMagic.r_repos",
            "SM_R_MAGIC_WORKERS": "--workers", "sagemaker_submit_directory": "the code location (RMagic.local_root or "
            "RMagic.bucket/RMagic.prefix)", "SAGEMAKER_SUBMIT_DIRECTORY": "the code location (RMagic.local_root or "
            "RMagic.bucket/RMagic.prefix)"}
NAME_MEMBERS = ("ChannelName", "InputName", "OutputName", "Name", "VariantName", "Key")

# The operations whose requests are checked (tuning and transform jobs to come): their input shapes are what
# the cache file keeps. Checking another operation reads botocore's whole model.
CHECKED_OPERATIONS = ("CreateTrainingJob", "CreateProcessingJob", "CreateModel", "CreateEndpointConfig",
                      "CreateEndpoint", "CreateModelPackage", "CreateTransformJob", "CreateHyperParameterTuningJob")
CACHE_FORMAT = 1

_lock = threading.Lock()
_loader = None
_model = None


class _Shape:
    """A shape of botocore's model JSON, read through the names botocore.model.Shape gives what the walk uses."""

    def __init__(self, shapes, name):
        self._shapes = shapes
        self.name = name
        self.metadata = shapes[name]  # min, max, pattern, enum, required are keys of the shape itself

    @property
    def type_name(self):
        return self.metadata["type"]

    @property
    def enum(self):
        return self.metadata.get("enum", [])

    @property
    def required_members(self):
        return self.metadata.get("required", [])

    @functools.cached_property
    def members(self):
        return {name: _Shape(self._shapes, ref["shape"]) for name, ref in self.metadata.get("members", {}).items()}

    def _ref(self, key):
        return _Shape(self._shapes, self.metadata[key]["shape"])

    member = property(lambda self: self._ref("member"))
    key = property(lambda self: self._ref("key"))
    value = property(lambda self: self._ref("value"))


class _Model:
    """Operations and shapes of a SageMaker model JSON (botocore's whole one, or the cached part)."""

    def __init__(self, data):
        self.data = data

    def input_shape(self, operation):
        if operation not in self.data["operations"]:
            if operation not in _full_data()["operations"]:
                raise KeyError(f"SageMaker has no operation {operation}")
            return _Model(_full_data()).input_shape(operation)
        return _Shape(self.data["shapes"], self.data["operations"][operation]["input"]["shape"])


def _bundled_model_file():
    """botocore's own SageMaker model file (its newest API version), without importing botocore; None without
    botocore, or when botocore's loader would read another model first (AWS_DATA_PATH, ~/.aws/models)."""
    try:
        spec = importlib.util.find_spec("botocore")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or os.environ.get("AWS_DATA_PATH") or \
            os.path.isdir(os.path.join(os.path.expanduser("~"), ".aws", "models", "sagemaker")):
        return None
    base = os.path.join(os.path.dirname(spec.origin), "data", "sagemaker")
    try:
        version = max(os.listdir(base))
    except (OSError, ValueError):
        return None
    for name in ("service-2.json.gz", "service-2.json"):
        if os.path.isfile(os.path.join(base, version, name)):
            return os.path.join(base, version, name)
    return None


def cache_file(model_file):
    """Where the checked operations' shapes of this model file are kept (a new botocore is a new file)."""
    st = os.stat(model_file)
    key = f"{CACHE_FORMAT}\0{model_file}\0{st.st_mtime_ns}\0{st.st_size}\0{','.join(CHECKED_OPERATIONS)}"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "sm-r-magic", f"sagemaker-limits-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json")


@functools.lru_cache(maxsize=1)
def _full_data():
    """botocore's whole SageMaker model JSON, as botocore's own loader finds it (ImportError without botocore)."""
    import botocore.loaders

    return botocore.loaders.Loader().load_service_model("sagemaker", "service-2")


def _checked_part(data):
    """The checked operations and every shape their inputs reach."""
    operations = {name: data["operations"][name] for name in CHECKED_OPERATIONS if name in data["operations"]}
    shapes, todo = {}, [op["input"]["shape"] for op in operations.values()]
    while todo:
        name = todo.pop()
        if name in shapes:
            continue
        shape = shapes[name] = data["shapes"][name]
        todo += [shape[k]["shape"] for k in ("member", "key", "value") if k in shape]
        todo += [ref["shape"] for ref in shape.get("members", {}).values()]
    return {"operations": operations, "shapes": shapes}


def _read_cache(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _write_cache(path, data):
    """Best effort (a read-only home only costs the slow read next time), atomic (kernels start together)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".limits-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        pass


def _load():
    global _model
    try:
        model_file = _bundled_model_file()
        if model_file is None:
            data = _full_data()
        else:
            path = cache_file(model_file)
            data = _read_cache(path)
            if data is None:
                data = _checked_part(_full_data())
                _write_cache(path, data)
        _model = _Model(data)
    except ImportError:
        _model = False  # no botocore (pip install sm-r-magic without [aws]): nothing to check against
    except Exception:  # a botocore without SageMaker's model: as without botocore, nothing to check against
        _model = False


def preload():
    """Start reading the service model in the background (once per process)."""
    global _loader
    with _lock:
        if _loader is None:
            _loader = threading.Thread(target=_load, name="sm-r-magic-limits", daemon=True)
            _loader.start()


def service_model():
    """SageMaker's model (the checked operations' part, or the whole), or None without botocore."""
    preload()
    _loader.join()
    return _model or None


class Violation(Exception):
    """The first member SageMaker would refuse; `problem` follows the value when `about_value` is set
    ("--max-run 3000000 is above ..."), else the option ("--hp alpha: the value is ...")."""

    def __init__(self, path, problem, about_value=False):
        super().__init__(problem)
        self.path = path
        self.problem = problem
        self.about_value = about_value


def check(operation, request, on_sagemaker=True):
    """Raise SmRMagicError (one line, naming the user's option) at the first member of `request` that
    SageMaker's `operation` would refuse."""
    model = service_model()
    if model is None:
        return
    try:
        _walk(operation, model.input_shape(operation), request, (), on_sagemaker)
    except Violation as violation:
        raise SmRMagicError(_message(violation, request)) from None


# -- the walk ----------------------------------------------------------------------------------------------

def _generic(path):
    """("InputDataConfig", 0, "ChannelName") -> "InputDataConfig[].ChannelName"; map keys become {}."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += "[]"
        elif isinstance(step, tuple):
            text += "{}"
        else:
            text += ("." if text else "") + step
    return text


def _walk(operation, shape, value, path, on_sagemaker):
    if path and not on_sagemaker and _member_name(path) in SAGEMAKER_ONLY:
        return
    kind = shape.type_name
    if kind == "structure":
        _walk_structure(operation, shape, value, path, on_sagemaker)
    elif kind in ("list", "map"):
        _walk_collection(operation, shape, value, path, on_sagemaker)
    elif kind == "string":  # hyperparameters are sent JSON-encoded ("mpg ~ wt" with its quotes)
        _check_string(shape, value, path, "JSON-encoded value" if path[0] == "HyperParameters" else "value")
    elif kind in ("integer", "long", "float", "double"):
        _check_number(operation, shape, value, path)
    elif kind == "boolean" and not isinstance(value, bool):
        raise Violation(path, f"{value!r} is not true or false")


def _member_name(path):
    for step in reversed(path):
        if isinstance(step, str):
            return step
    return ""


def _walk_structure(operation, shape, value, path, on_sagemaker):
    if not isinstance(value, dict):
        raise Violation(path, f"{value!r} is not a structure")
    for required in shape.required_members:
        skipped = not on_sagemaker and required in SAGEMAKER_ONLY
        if required not in value and not skipped:
            raise Violation(path + (required,), f"{required} is missing")
    for name, member in value.items():
        if name not in shape.members:
            raise Violation(path + (name,), f"{name} is not a member of {shape.name}")
        _walk(operation, shape.members[name], member, path + (name,), on_sagemaker)


def _walk_collection(operation, shape, value, path, on_sagemaker):
    is_map = shape.type_name == "map"
    if not isinstance(value, dict if is_map else list):
        raise Violation(path, f"{value!r} is not a {'map' if is_map else 'list'}")
    _check_count(shape, len(value), path, "entries" if is_map else "items")
    if is_map:
        for key, item in value.items():
            _check_string(shape.key, key, path + (("key", key),), what="name")
            _walk(operation, shape.value, item, path + (("key", key),), on_sagemaker)
    else:
        for index, item in enumerate(value):
            _walk(operation, shape.member, item, path + (index,), on_sagemaker)


def _check_count(shape, count, path, what):
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and count < low:
        raise Violation(path, f"{count} {what}: SageMaker needs at least {low}")
    if high is not None and count > high:
        raise Violation(path, f"{count} {what}: SageMaker takes at most {high} (sm-r-magic's own included)")


def _check_string(shape, value, path, what="value"):
    if not isinstance(value, str):
        raise Violation(path, f"{value!r} is not a string")
    if shape.enum and value not in shape.enum:
        raise Violation(path, _not_in_enum(shape, value), about_value=True)
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and len(value) < low:
        raise Violation(path, f"the {what} is {len(value)} characters long; SageMaker needs at least {low}")
    if high is not None and len(value) > high:
        raise Violation(path, f"the {what} is {len(value):,} characters long; SageMaker takes at most {high:,}")
    pattern = _pattern(shape.metadata.get("pattern"))
    if pattern is not None and not pattern.fullmatch(value):
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise Violation(path, f"{what} {shown!r} does not match SageMaker's pattern {shape.metadata['pattern']}")


def _check_number(operation, shape, value, path):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Violation(path, f"{value!r} is not a number")
    low = shape.metadata.get("min")
    high = shape.metadata.get("max", DOCUMENTED_MAXIMUMS.get((operation, _generic(path))))
    if low is not None and value < low:
        raise Violation(path, f"is below SageMaker's minimum of {low:,}", about_value=True)
    if high is not None and value > high:
        raise Violation(path, f"is above SageMaker's maximum of {high:,}", about_value=True)


def _not_in_enum(shape, value):
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", shape.name).lower().replace("production variant", "endpoint")
    close = difflib.get_close_matches(value, shape.enum, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else f" ({len(shape.enum)} are; e.g. {shape.enum[0]})"
    return f"is not a SageMaker {words}{hint}"


_patterns = {}
# Java's surrogate-pair range, which Python's re cannot compile, as the code points it stands for.
_SURROGATES = "\\uD800\\uDC00-\\uDBFF\\uDFFF"


def _pattern(text):
    """The model's pattern as a Python regex (full match, as SageMaker applies it), or None when Python's
    re cannot express it (Java's \\p{...} classes, only in members such as tag keys that sm-r-magic fills)."""
    if not text:
        return None
    if text not in _patterns:
        try:
            _patterns[text] = re.compile(text.replace(_SURROGATES, "\\U00010000-\\U0010FFFF"))
        except re.error:
            _patterns[text] = None
    return _patterns[text]


# -- the message -------------------------------------------------------------------------------------------

def _item_name(request, path):
    """The name of the innermost list item on the path (a channel's ChannelName, an input's InputName)."""
    node, name = request, None
    for step in path:
        if isinstance(step, tuple):
            step = step[1]
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and isinstance(step, int):
            name = next((node[m] for m in NAME_MEMBERS if isinstance(node.get(m), str)), name)
    return name


def _option(violation, request):
    path = violation.path
    keys = [step[1] for step in path if isinstance(step, tuple)]
    if keys and keys[-1] in OWN_KEYS:
        return OWN_KEYS[keys[-1]]
    item = _item_name(request, path)
    if item == "code" and path and path[0] == "ProcessingInputs":
        return OWN_KEYS["SAGEMAKER_SUBMIT_DIRECTORY"]
    generic = _generic(path)
    for pattern, template in OPTIONS:
        if re.fullmatch(pattern, generic):
            return template.format(key=keys[-1] if keys else "", item=item or "")
    return f"the request's {generic}"


def _message(violation, request):
    option = _option(violation, request)
    if violation.about_value:
        return f"{option} {_value_at(request, violation.path)} {violation.problem}"
    return f"{option}: {violation.problem}"


def _value_at(request, path):
    node = request
    for step in path:
        node = node[step[1] if isinstance(step, tuple) else step]
    return node
