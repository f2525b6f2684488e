"""Pure parsing and validation of magic options: every failure is an SmRMagicError with one line."""

import json
import math
import re

from .errors import SmRMagicError

# SageMaker job names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}. A base name leaves room for the
# "-YYYYmmdd-HHMMSS-xxxx" suffix that makes every submission unique.
NAME_SUFFIX_LENGTH = 21
MAX_BASE_NAME = 63 - NAME_SUFFIX_LENGTH
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_CHANNEL = re.compile(r"^[A-Za-z0-9\.\-_]{1,64}$")
_ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def validate_base_name(name):
    if not _NAME.match(name or ""):
        raise SmRMagicError(f"invalid --name {name!r}: use letters, digits and hyphens, starting and ending "
                            "with a letter or digit (e.g. --name mtcars-lm)")
    if len(name) > MAX_BASE_NAME:
        raise SmRMagicError(f"--name {name!r} is {len(name)} characters long: use at most {MAX_BASE_NAME} "
                            f"(a {NAME_SUFFIX_LENGTH}-character timestamp suffix makes each job name unique)")
    return name


def split_pair(text, option, value_hint="VALUE", require_value=True):
    """'NAME=VALUE' -> (NAME, VALUE); 'NAME' -> (NAME, None) when the value is optional."""
    name, sep, value = (text or "").partition("=")
    name = name.strip()
    if not name or (require_value and (not sep or value == "")):
        raise SmRMagicError(f"malformed {option} {text!r}: expected {option} NAME={value_hint}")
    return name, (value if sep else None)


def parse_pairs(items, option, value_hint="VALUE", require_value=True, name_pattern=None, what="name"):
    """Repeated NAME=VALUE options -> dict, rejecting duplicates and names SageMaker would refuse."""
    result = {}
    for item in items or ():
        name, value = split_pair(item, option, value_hint, require_value)
        if name_pattern is not None and not name_pattern.match(name):
            raise SmRMagicError(f"malformed {option} {item!r}: {what} {name!r} may only hold letters, digits, "
                                "'.', '-' and '_'")
        if name in result:
            raise SmRMagicError(f"{option} {name} is given twice: give each {what} once")
        result[name] = value
    return result


def parse_channels(items, option="--channel"):
    return parse_pairs(items, option, "URI", name_pattern=_CHANNEL, what="channel")


def parse_inputs(items):
    return parse_pairs(items, "--input", "URI", name_pattern=_CHANNEL, what="input")


def parse_outputs(items):
    return parse_pairs(items, "--output", "URI", require_value=False, name_pattern=_CHANNEL, what="output")


def parse_env(items):
    env = parse_pairs(items, "--env", "VALUE", require_value=False, what="variable")
    for key in env:
        if not _ENV_KEY.match(key):
            raise SmRMagicError(f"malformed --env {key!r}: variable names are letters, digits and '_'")
    return {k: ("" if v is None else v) for k, v in env.items()}


def check_at_least_one(value, option):
    """A count, size or duration given by the user: a whole number of at least 1 (SageMaker's minimum), or None
    (not given: the setting's default applies)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise SmRMagicError(f"{option} {value!r}: give a whole number of at least 1")
    return value


def parse_hp_value(text):
    """--hp values are JSON when they parse (0.5, true, [1,2]), else plain strings ("mpg ~ wt")."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    # NaN/Infinity are not JSON: SageMaker and R get the text, and sm_hp(name, 1.0) reads it as a number
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


def parse_hyperparameters(items=(), json_text=None):
    hps = {}
    if json_text:
        try:
            loaded = json.loads(json_text)
        except ValueError as exc:
            raise SmRMagicError(f"--hyperparameters is not valid JSON ({exc.msg} at column {exc.colno}): "
                                "give an object, e.g. --hyperparameters '{\"alpha\": 0.5}'") from None
        if not isinstance(loaded, dict):
            raise SmRMagicError("--hyperparameters must be a JSON object, e.g. '{\"alpha\": 0.5}'")
        hps.update(loaded)
    for key, value in parse_pairs(items, "--hp", "VALUE", what="hyperparameter").items():
        hps[key] = parse_hp_value(value)
    reserved = sorted(k for k in hps if k.startswith("sagemaker_"))
    if reserved:
        raise SmRMagicError(f"hyperparameter {reserved[0]!r} is reserved: sagemaker_* names are set by sm-r-magic")
    return hps


def parse_packages(text):
    """'glmnet, data.table' -> ['glmnet', 'data.table']."""
    if not text:
        return []
    packages = [p.strip() for p in text.split(",") if p.strip()]
    for pkg in packages:
        if not re.match(r"^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$", pkg):
            raise SmRMagicError(f"--packages: {pkg!r} is not an R package name (e.g. --packages glmnet,data.table)")
    return packages


def parse_metrics(items):
    metrics = parse_pairs(items, "--metric", "REGEX", what="metric")
    for name, regex in metrics.items():
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise SmRMagicError(f"--metric {name}: {regex!r} is not a valid regular expression ({exc})") from None
        if compiled.groups < 1:
            raise SmRMagicError(f"--metric {name}: the regex needs a group around the number, "
                                f"e.g. --metric {name}='{name}: ([0-9.eE+-]+)'")
    return metrics


def python_identifier(name):
    ident = re.sub(r"\W", "_", name)
    return ident if ident.isidentifier() else f"_{ident}"
