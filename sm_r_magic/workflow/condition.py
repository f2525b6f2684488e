"""A pipeline condition as a user writes it, `STEP.OUTPUT/FILE:JSON.PATH OP NUMBER`, e.g.

    evaluate.evaluation/evaluation.json:regression_metrics.rmse.value <= 3.5

parsed into the Condition step's JSON: a comparison of `Std:JsonGet` over a PropertyFile (FILE in the
processing output OUTPUT of step STEP) with a number. Pure; every bad input is one SmRMagicError line."""

import math
import re
from dataclasses import dataclass

from ..errors import SmRMagicError

# operator -> SageMaker condition Type; != is Not(Equals), as the SDK's ConditionNot writes it
OPERATORS = {"<=": "LessThanOrEqualTo", "<": "LessThan", ">=": "GreaterThanOrEqualTo", ">": "GreaterThan",
             "==": "Equals", "!=": "Equals"}
NEGATED = {"!="}

EXAMPLE = "evaluate.evaluation/evaluation.json:regression_metrics.rmse.value <= 3.5"
SYNTAX = f"write STEP.OUTPUT/FILE:JSON.PATH OP NUMBER, e.g. {EXAMPLE}"

_CONDITION = re.compile(
    r"\s*(?P<step>[^.\s/:]+)\.(?P<output>[^/\s:]+)/(?P<file>[^:\s]+):(?P<path>[^\s<>=!~]+)"
    r"\s*(?P<op>[<>=!~]+)\s*(?P<value>[^\s<>=!~]\S*)\s*")
_PATH = re.compile(r"(\$\.)?[^.\[\]]+(\[\d+\])*(\.[^.\[\]]+(\[\d+\])*)*")


@dataclass(frozen=True)
class Condition:
    step: str
    output: str
    file: str
    path: str
    operator: str
    value: float
    text: str

    @property
    def property_file(self):
        """The PropertyFileName declared on the step: the file's name without its extension."""
        stem = self.file.rsplit("/", 1)[-1].split(".", 1)[0] or "report"
        return re.sub(r"[^A-Za-z0-9\-_]", "-", stem)

    def json_get(self):
        return {"Std:JsonGet": {"PropertyFile": {"Get": f"Steps.{self.step}.PropertyFiles.{self.property_file}"},
                                "Path": self.path}}

    def to_json(self):
        """The condition as one entry of a Condition step's Conditions."""
        comparison = {"Type": OPERATORS[self.operator], "LeftValue": self.json_get(), "RightValue": self.value}
        if self.operator in NEGATED:
            return {"Type": "Not", "Expression": comparison}
        return comparison

    def property_file_json(self):
        """The PropertyFiles entry of the step that writes the report."""
        return {"PropertyFileName": self.property_file, "OutputName": self.output, "FilePath": self.file}


def parse(text):
    """'STEP.OUTPUT/FILE:JSON.PATH OP NUMBER' -> Condition; the steps are checked by the definition."""
    if not isinstance(text, str) or not text.strip():
        raise SmRMagicError(f"the condition is empty: {SYNTAX}")
    match = _CONDITION.fullmatch(text)
    if not match:
        raise SmRMagicError(f"malformed condition {text!r}: {SYNTAX}")
    parts = match.groupdict()
    if parts["op"] not in OPERATORS:
        raise SmRMagicError(f"unknown operator {parts['op']!r} in condition {text!r}: use one of "
                            f"{', '.join(OPERATORS)}")
    value = _number(parts["value"], text)
    if not _PATH.fullmatch(parts["path"]):
        raise SmRMagicError(f"malformed JSON path {parts['path']!r} in condition {text!r}: write keys separated "
                            "by dots, with [N] for list items, e.g. regression_metrics.rmse.value")
    if parts["file"].startswith("/") or ".." in parts["file"].split("/"):
        raise SmRMagicError(f"condition {text!r}: FILE {parts['file']!r} must be a path inside the output "
                            "folder (no leading / or ..)")
    return Condition(step=parts["step"], output=parts["output"], file=parts["file"], path=parts["path"],
                     operator=parts["op"], value=value, text=text.strip())


def _number(text, condition):
    try:
        value = int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)
    except ValueError:
        raise SmRMagicError(f"the right side {text!r} of condition {condition!r} is not a number: compare with a "
                            "number, e.g. <= 3.5") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SmRMagicError(f"the right side {text!r} of condition {condition!r} is not a finite number: "
                            "compare with a number, e.g. <= 3.5")
    return value
