"""Names SageMaker accepts for pipelines, steps, parameters and model package groups, and the check of a
whole CreatePipeline request against botocore's own model of the API. Every failure is one line."""

import re

from ..errors import SmRMagicError

# CreatePipeline PipelineName; ModelPackageGroupName without its ARN form (botocore's sagemaker model);
# step and parameter names as the pipeline definition JSON schema gives them.
PIPELINE_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}")
GROUP_NAME = re.compile(r"([a-zA-Z0-9]([a-zA-Z0-9-]){0,62})(?<!-)")
STEP_NAME = re.compile(r"[A-Za-z0-9\-_]{1,64}")
PARAMETER_NAME = re.compile(r"[A-Za-z0-9\-_]{1,64}")
APPROVAL_STATUSES = ("Approved", "Rejected", "PendingManualApproval")


def check_pipeline_name(name):
    if not isinstance(name, str) or not PIPELINE_NAME.fullmatch(name):
        raise SmRMagicError(f"invalid pipeline name {name!r}: use letters, digits and hyphens, starting and ending "
                            "with a letter or digit, at most 256 characters (e.g. mtcars)")
    return name


def check_group_name(name):
    if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
        raise SmRMagicError(f"invalid model package group name {name!r}: use letters, digits and hyphens, "
                            "starting and ending with a letter or digit, at most 63 characters (e.g. mtcars-models)")
    return name


def check_approval(status):
    if status not in APPROVAL_STATUSES:
        raise SmRMagicError(f"approval status {status!r}: use {', '.join(APPROVAL_STATUSES)}")
    return status


def parameter_name(text):
    """A pipeline parameter name made from an input or channel name ('.' is not allowed there)."""
    return re.sub(r"[^A-Za-z0-9\-_]", "_", text)[:64]


def check_request(operation, params):
    """Validate `params` against botocore's input shape of a SageMaker operation: types, required members and
    lengths (botocore's own ParamValidator), plus the maximum lengths and patterns botocore leaves to the
    service. Raises SmRMagicError with every problem on one line."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model(operation).input_shape
    problems = []
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        problems += [line for line in report.generate_report().splitlines()
                     if not line.startswith("Missing required parameter") or "ClientRequestToken" not in line]
    for key, value in params.items():
        member = shape.members.get(key)
        if member is None or not isinstance(value, str):
            continue
        limit, pattern = member.metadata.get("max"), member.metadata.get("pattern")
        if limit is not None and len(value) > limit:
            problems.append(f"{key} is {len(value)} characters long: at most {limit} are allowed")
        if pattern and not _matches(pattern, value):
            problems.append(f"{key} {value[:80]!r} does not match {pattern}")
    if problems:
        raise SmRMagicError(f"invalid {operation} request: " + "; ".join(problems))
    return params


def _matches(pattern, value):
    try:
        return re.fullmatch(pattern, value, flags=re.DOTALL) is not None
    except re.error:  # a Java-style class (\p{L}) Python's re does not know: the service checks it
        return True


def parse_reference(text):
    """'group' -> (group, None); 'group/3' -> (group, 3)."""
    group, sep, version = str(text or "").partition("/")
    check_group_name(group)
    if not sep:
        return group, None
    if not re.fullmatch(r"[1-9]\d*", version):
        raise SmRMagicError(f"model package {text!r}: write GROUP/VERSION with a version number, e.g. {group}/2")
    return group, int(version)
