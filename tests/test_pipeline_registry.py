"""The local model registry: numbered versions (also when many processes register at once), newest first,
approval, the newest Approved version, answers shaped like the SageMaker registry API, and bad input."""

import os
import subprocess
import sys

import pytest

from sm_r_magic.errors import SmRMagicError
from sm_r_magic.backends.local_registry import LocalModelRegistry
from sm_r_magic.workflow.names import parse_reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_request(group="mtcars-models", model="/root/output/x/fit/model.tar.gz", approval=None):
    request = {"ModelPackageGroupName": group,
               "InferenceSpecification": {"Containers": [{"Image": "sm-r-magic:latest", "ModelDataUrl": model,
                                                          "Environment": {}}],
                                          "SupportedContentTypes": ["text/csv", "application/json"],
                                          "SupportedResponseMIMETypes": ["text/csv", "application/json"]}}
    if approval:
        request["ModelApprovalStatus"] = approval
    return request


def test_versions_count_up_and_list_newest_first(tmp_path):
    registry = LocalModelRegistry(tmp_path)
    first = registry.register(package_request(model="/m/1.tar.gz"), generated_by="local:pipeline/p/execution/a",
                              metrics={"regression_metrics": {"rmse": {"value": 2.9}}})
    second = registry.register(package_request(model="/m/2.tar.gz"))
    assert (first["ModelPackageVersion"], second["ModelPackageVersion"]) == (1, 2)
    assert first["ModelApprovalStatus"] == "PendingManualApproval"  # SageMaker's default
    assert first["MetadataProperties"] == {"GeneratedBy": "local:pipeline/p/execution/a"}
    assert first["Metrics"] == {"regression_metrics": {"rmse": {"value": 2.9}}}
    assert first["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == "/m/1.tar.gz"
    listed = registry.list_packages("mtcars-models")["ModelPackageSummaryList"]
    assert [p["ModelPackageVersion"] for p in listed] == [2, 1]
    assert listed[0]["ModelPackageArn"] == "local:model-package/mtcars-models/2"
    # a new LocalModelRegistry (another process, after a restart) reads the same versions
    assert LocalModelRegistry(tmp_path).describe("mtcars-models", 1)["CreationTime"] == first["CreationTime"]


def test_approval_and_the_newest_approved_version(tmp_path):
    registry = LocalModelRegistry(tmp_path)
    for _ in range(3):
        registry.register(package_request())
    with pytest.raises(SmRMagicError, match=r"no version is Approved \(newest: mtcars-models/3, "
                                            r"PendingManualApproval\): approve one with %r_approve mtcars-models/3"):
        registry.latest_approved("mtcars-models")
    registry.update_approval("mtcars-models", 1, "Approved")
    assert registry.latest_approved("mtcars-models")["ModelPackageVersion"] == 1
    registry.update_approval("mtcars-models", 2, "Approved", description="rmse 2.7")
    assert registry.latest_approved("mtcars-models")["ModelPackageVersion"] == 2  # the newest, not the oldest
    assert registry.describe("mtcars-models", 2)["ApprovalDescription"] == "rmse 2.7"
    registry.update_approval("mtcars-models", 2, "Rejected")
    assert registry.latest_approved("mtcars-models")["ModelPackageVersion"] == 1
    approved = registry.list_packages("mtcars-models", approval="Approved")["ModelPackageSummaryList"]
    assert [p["ModelPackageVersion"] for p in approved] == [1]
    registry.register(package_request(approval="Approved"))
    assert registry.latest_approved("mtcars-models")["ModelPackageVersion"] == 4


def test_concurrent_registrations_never_share_a_version(tmp_path):
    script = ("import sys; from sm_r_magic.backends.local_registry import LocalModelRegistry as R; r = R(sys.argv[1]); "
              "print(*[r.register({'ModelPackageGroupName': 'g', 'InferenceSpecification': {'Containers': "
              "[{'Image': 'i'}]}})['ModelPackageVersion'] for _ in range(5)])")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(6)]
    numbers = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        numbers += [int(n) for n in out.split()]
    assert sorted(numbers) == list(range(1, 31))
    assert LocalModelRegistry(tmp_path).versions("g") == list(range(30, 0, -1))


def test_answers_are_shaped_like_the_sagemaker_registry_api(tmp_path):
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")

    def members(operation, *path):
        shape = model.operation_model(operation).output_shape
        for key in path:
            shape = shape.members[key]
            shape = getattr(shape, "member", shape)
        return shape

    registry = LocalModelRegistry(tmp_path)
    described = registry.register(package_request(), generated_by="local:pipeline/p/execution/a")
    describe_shape = members("DescribeModelPackage")
    assert set(describe_shape.required_members) <= set(described)
    assert set(described) - set(describe_shape.members) == {"Metrics"}  # the report's content, local only
    summary = registry.list_packages("mtcars-models")["ModelPackageSummaryList"][0]
    summary_shape = members("ListModelPackages", "ModelPackageSummaryList")
    assert set(summary_shape.required_members) <= set(summary) <= set(summary_shape.members)
    group = registry.describe_group("mtcars-models")
    assert set(group) <= set(members("DescribeModelPackageGroup").members)
    assert [g["ModelPackageGroupName"] for g in registry.list_groups()["ModelPackageGroupSummaryList"]] == \
        ["mtcars-models"]


@pytest.mark.parametrize("call, message", [
    (lambda r: r.register(package_request(group="bad_name")), "invalid model package group name 'bad_name'"),
    (lambda r: r.register(package_request(approval="Yes")), "approval status 'Yes': use Approved, Rejected"),
    (lambda r: r.register({"ModelPackageGroupName": "g", "InferenceSpecification": {"Containers": []}}),
     "needs InferenceSpecification.Containers with an Image"),
    (lambda r: r.latest_approved("nothing-here"), "no model package group 'nothing-here' in the local registry"),
    (lambda r: r.describe("nothing-here", 1), "no model package group 'nothing-here'"),
])
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, call, message):
    registry = LocalModelRegistry(tmp_path)
    with pytest.raises(SmRMagicError, match=message):
        call(registry)
    assert not os.path.exists(registry.path)


def test_empty_groups_missing_versions_and_references(tmp_path):
    registry = LocalModelRegistry(tmp_path)
    registry.create_group("empty")
    with pytest.raises(SmRMagicError, match="empty: the group has no versions yet: run the pipeline"):
        registry.latest_approved("empty")
    registry.register(package_request(group="empty"))
    with pytest.raises(SmRMagicError, match=r"has no version 7 \(versions: 1\)"):
        registry.update_approval("empty", 7, "Approved")
    assert parse_reference("mtcars-models") == ("mtcars-models", None)
    assert parse_reference("mtcars-models/12") == ("mtcars-models", 12)
    for bad in ("mtcars-models/x", "mtcars-models/0", "mtcars_models/1"):
        with pytest.raises(SmRMagicError):
            parse_reference(bad)
