"""Evaluation of a pipeline definition's expressions, as SageMaker Pipelines evaluates them:

    {"Get": "Steps.<step>.<property path>"}   a property of a step's description (DescribeProcessingJob /
                                              DescribeTrainingJob shaped; a Condition's Outcome, ...)
    {"Get": "Parameters.<name>"}              the execution's parameter value
    {"Get": "Execution.<variable>"}           PipelineExecutionId, StartDateTime, ...
    {"Std:Join": {"On": sep, "Values": [...]}}
    {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.<step>.PropertyFiles.<name>"}, "Path": "a.b[0].c"}}
    conditions: Equals, GreaterThan(OrEqualTo), LessThan(OrEqualTo), In, Not, Or

Pure: the caller gives the step descriptions, parameters, execution variables, the steps' PropertyFiles
declarations and a function that reads a JSON file by URI."""

import datetime
import re

from ..errors import SmRMagicError

FUNCTIONS = ("Get", "Std:Join", "Std:JsonGet")
_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


class ExpressionError(SmRMagicError):
    """An expression that cannot be evaluated in this execution: one line saying which and why."""


class Context:
    """What expressions read. steps: step name -> its description (only steps that ran); parameters: name ->
    value; execution: variable -> value (or a function of no arguments, e.g. CurrentDateTime);
    property_files: step name -> {PropertyFileName: {"OutputName", "FilePath"}}; read_json(uri) -> data."""

    def __init__(self, *, steps=None, parameters=None, execution=None, property_files=None, read_json=None):
        self.steps = steps if steps is not None else {}
        self.parameters = parameters or {}
        self.execution = execution or {}
        self.property_files = property_files or {}
        self.read_json = read_json
        self._json_cache = {}

    def json_at(self, uri):
        if uri not in self._json_cache:
            if self.read_json is None:
                raise ExpressionError(f"cannot read {uri}: no reader of property files")
            self._json_cache[uri] = self.read_json(uri)
        return self._json_cache[uri]


def is_expression(value):
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in FUNCTIONS


def resolve(obj, ctx):
    """`obj` with every expression inside it replaced by its value (for a step's Arguments)."""
    if is_expression(obj):
        return evaluate(obj, ctx)
    if isinstance(obj, dict):
        return {key: resolve(value, ctx) for key, value in obj.items()}
    if isinstance(obj, list):
        return [resolve(value, ctx) for value in obj]
    return obj


def evaluate(expr, ctx):
    """The value of one expression (a literal is its own value)."""
    if not is_expression(expr):
        return resolve(expr, ctx) if isinstance(expr, (dict, list)) else expr
    function, argument = next(iter(expr.items()))
    if function == "Get":
        return _get(argument, ctx)
    if function == "Std:Join":
        values = [_as_text(evaluate(value, ctx)) for value in argument.get("Values", [])]
        return str(argument.get("On", "")).join(values)
    return _json_get(argument, ctx)


def _get(path, ctx):
    if not isinstance(path, str) or "." not in path:
        raise ExpressionError(f"Get {path!r}: expected Steps.<step>.<property>, Parameters.<name> or "
                              "Execution.<variable>")
    root, rest = path.split(".", 1)
    if root == "Parameters":
        if rest not in ctx.parameters:
            raise ExpressionError(f"Get {path}: the pipeline has no parameter {rest!r}")
        return ctx.parameters[rest]
    if root == "Execution":
        if rest not in ctx.execution:
            raise ExpressionError(f"Get {path}: unknown execution variable {rest!r} (known: "
                                  f"{', '.join(sorted(ctx.execution))})")
        value = ctx.execution[rest]
        return value() if callable(value) else value
    if root == "Steps":
        step, _, prop = rest.partition(".")
        if step not in ctx.steps:
            raise ExpressionError(f"Get {path}: step {step} has not run in this execution")
        return property_value(ctx.steps[step], prop, f"Steps.{step}")
    raise ExpressionError(f"Get {path}: expected Steps., Parameters. or Execution.")


def property_value(data, path, where="value"):
    """Walk a property path (`A.B['name'].C[0]`) through a description. A list indexed by a string is
    searched for the item whose *Name field equals it (Outputs['train'] is the output named train)."""
    value = data
    for token in _tokens(path, where):
        if isinstance(token, int):
            if not isinstance(value, list) or token >= len(value):
                raise ExpressionError(f"{where}.{path}: no item [{token}]")
            value = value[token]
        elif isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list):
            named = [item for item in value if isinstance(item, dict)
                     and any(k.endswith("Name") and v == token for k, v in item.items())]
            if not named:
                raise ExpressionError(f"{where}.{path}: no item named {token!r}")
            value = named[0]
        else:
            known = ", ".join(sorted(value)) if isinstance(value, dict) else type(value).__name__
            raise ExpressionError(f"{where}.{path}: no {token!r} (there is: {known})")
    return value


def _tokens(path, where):
    tokens, position = [], 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if not match or match.end() == position:
            raise ExpressionError(f"{where}: malformed property path {path!r}")
        key, index, quoted, double = match.groups()
        tokens.append(int(index) if index is not None else (key if key is not None else
                                                             (quoted if quoted is not None else double)))
        position = match.end()
    return tokens


def _json_get(argument, ctx):
    source, path = argument.get("PropertyFile"), argument.get("Path", "")
    reference = source.get("Get", "") if isinstance(source, dict) else ""
    parts = reference.split(".")
    if len(parts) != 4 or parts[0] != "Steps" or parts[2] != "PropertyFiles":
        raise ExpressionError(f"Std:JsonGet {source!r}: expected {{'Get': 'Steps.<step>.PropertyFiles.<name>'}}")
    step, name = parts[1], parts[3]
    declared = ctx.property_files.get(step, {}).get(name)
    if declared is None:
        raise ExpressionError(f"Std:JsonGet: step {step} declares no property file {name!r}")
    output = property_value(ctx.steps.get(step, {}), f"ProcessingOutputConfig.Outputs['{declared['OutputName']}']"
                            ".S3Output.S3Uri", f"Steps.{step}") if step in ctx.steps else None
    if output is None:
        raise ExpressionError(f"Std:JsonGet: step {step} has not run in this execution")
    uri = output.rstrip("/") + "/" + declared["FilePath"]
    data = ctx.json_at(uri)
    json_path = path[2:] if path.startswith("$.") else path
    return property_value(data, json_path, declared["FilePath"])


def _as_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)


# -- conditions --------------------------------------------------------------------------------------------
_COMPARISONS = {
    "Equals": lambda a, b: a == b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}


def holds(condition, ctx):
    """Whether one condition object holds."""
    kind = condition.get("Type")
    if kind in _COMPARISONS:
        left, right = evaluate(condition.get("LeftValue"), ctx), evaluate(condition.get("RightValue"), ctx)
        left, right = _comparable(left, right, kind)
        return bool(_COMPARISONS[kind](left, right))
    if kind == "Not":
        return not holds(condition.get("Expression") or {}, ctx)
    if kind == "Or":
        return any(holds(c, ctx) for c in condition.get("Conditions") or [])
    if kind == "In":
        value = evaluate(condition.get("QueryValue"), ctx)
        for candidate in condition.get("Values") or []:
            left, right = _comparable(value, evaluate(candidate, ctx), "In")
            if left == right:
                return True
        return False
    raise ExpressionError(f"unknown condition Type {kind!r}")


def all_hold(conditions, ctx):
    """A Condition step's outcome: every condition holds."""
    return all(holds(condition, ctx) for condition in conditions or [])


def _comparable(left, right, kind):
    """Numbers compare as numbers (a number and a numeric string too), strings as strings."""
    def number(value):
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return value
        try:
            return float(value) if isinstance(value, str) else None
        except ValueError:
            return None

    if isinstance(left, (int, float)) or isinstance(right, (int, float)):
        a, b = number(left), number(right)
        if a is not None and b is not None:
            return a, b
        if kind == "Equals" or kind == "In":
            return left, right
        raise ExpressionError(f"{kind}: cannot compare {left!r} with {right!r} (a number with something else)")
    return left, right
