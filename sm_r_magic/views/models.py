"""%r_models: a model package group's versions as a text table, newest first: approval, creation time, the
metrics of the report the condition read, and the pipeline execution that registered each."""


def _numbers(value, prefix=""):
    """'a.b.c=1.23' for every number in a (nested) metrics report."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [f"{prefix}={value:.4g}"]
    if isinstance(value, dict):
        return [item for key, inner in value.items() for item in _numbers(inner, f"{prefix}.{key}" if prefix else key)]
    if isinstance(value, list):
        return [item for i, inner in enumerate(value) for item in _numbers(inner, f"{prefix}[{i}]")]
    return []


def metrics_text(package):
    """The version's metrics: the report's numbers (local registry), else where the report is (SageMaker)."""
    found = _numbers(package.get("Metrics") or {})
    if found:
        return ", ".join(found)
    statistics = ((package.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}
    return statistics.get("S3Uri") or "-"


def execution_text(package):
    """The id of the pipeline execution that registered the version (the end of its ARN)."""
    arn = (package.get("MetadataProperties") or {}).get("GeneratedBy") or ""
    return arn.rsplit("/", 1)[-1] if arn else "-"


def print_model_packages(group, packages):
    if not packages:
        print(f"model package group {group} has no versions yet")
        return
    head = ("version", "approval", "created", "metrics", "execution")
    rows = []
    for package in packages:
        created = package.get("CreationTime")
        when = created.strftime("%Y-%m-%d %H:%M:%S") if hasattr(created, "strftime") else str(created or "-")
        rows.append((f"{group}/{package['ModelPackageVersion']}", package["ModelApprovalStatus"], when,
                     metrics_text(package), execution_text(package)))
    widths = [max(len(str(row[i])) for row in rows + [head]) for i in range(len(head))]
    for row in [head] + rows:
        print("  ".join(str(value).ljust(width) for value, width in zip(row, widths)).rstrip())
