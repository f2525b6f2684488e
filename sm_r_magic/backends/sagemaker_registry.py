"""The SageMaker model registry, for the sagemaker backend, answering as the local registry does
(pipeline/registry.py): model package groups (created when missing), numbered versions, approval, newest first
always, answers shaped like DescribeModelPackage plus `Metrics` (the evaluation report a version's
ModelMetrics names, read from S3)."""

import json
from concurrent.futures import ThreadPoolExecutor

from .. import aws
from ..errors import SmRMagicError
from ..workflow import names
from ..uris import is_s3, split_s3
from .sagemaker_part import SageMakerPart

REPORT_MAX_BYTES = 1 << 20  # a metrics report is read back only up to this size
PARALLEL_DESCRIBES = 8


class SageMakerRegistry(SageMakerPart):
    def package_arn(self, group, version):
        """A version's ARN, as SageMaker writes it (the group's name in lower case); describe() falls back to the
        listed ARN."""
        session = self.backend.session
        return (f"arn:{session.partition}:sagemaker:{session.region}:{session.account}:model-package/"
                f"{group.lower()}/{int(version)}")

    # -- groups ------------------------------------------------------------------------------------------
    def _group(self, group):
        """DescribeModelPackageGroup, or None when there is no such group."""
        from botocore.exceptions import ClientError

        names.check_group_name(group)
        try:
            return self.backend.strip(self.sm.describe_model_package_group(ModelPackageGroupName=group))
        except ClientError as exc:
            if aws.is_not_found(exc):
                return None
            raise self.backend.refusal(f"describe the model package group {group}", exc) from None

    def describe_group(self, group):
        """DescribeModelPackageGroup; a missing group is one line naming the groups there are."""
        found = self._group(group)
        if found is not None:
            return found
        known = self.group_names()
        raise SmRMagicError(f"no model package group {group!r} in {self.backend.session.region}"
                            + (f" (groups: {', '.join(known[:10])})" if known else " (it has no groups yet)"))

    def group_names(self):
        pages = self.sm.get_paginator("list_model_package_groups").paginate(SortBy="CreationTime",
                                                                            SortOrder="Descending")
        return self.backend.asking("list model package groups", lambda: [
            g["ModelPackageGroupName"] for page in pages for g in page.get("ModelPackageGroupSummaryList", [])])

    def ensure_group(self, group, description=None):
        """The group, created when missing (an existing one is left as it is); True when it was created."""
        from botocore.exceptions import ClientError

        if self._group(group) is not None:
            return False
        args = {"ModelPackageGroupName": group}
        if description:
            args["ModelPackageGroupDescription"] = description
        try:
            self.sm.create_model_package_group(**args)
        except ClientError as exc:
            if "already exists" not in aws.error_message(exc):  # made meanwhile by someone else: fine
                raise self.backend.refusal(f"create the model package group {group}", exc) from None
        return True

    # -- versions ----------------------------------------------------------------------------------------
    def register(self, request):
        """CreateModelPackage from a request (the group made when missing) -> its DescribeModelPackage answer."""
        group = request.get("ModelPackageGroupName")
        names.check_group_name(group)
        containers = (request.get("InferenceSpecification") or {}).get("Containers") or []
        if not containers or not all(c.get("Image") for c in containers):
            raise SmRMagicError("a model package needs InferenceSpecification.Containers with an Image")
        request = dict(request, ModelApprovalStatus=names.check_approval(
            request.get("ModelApprovalStatus") or "PendingManualApproval"))  # SageMaker's default, said out loud
        self.ensure_group(group)
        arn = self.backend.call(f"register a version in {group}", self.sm.create_model_package,
                                **request)["ModelPackageArn"]
        return self._describe_arn(arn, f"{group} (new version)")

    def _describe_arn(self, arn, shown):
        from botocore.exceptions import ClientError

        try:
            answer = self.backend.strip(self.sm.describe_model_package(ModelPackageName=arn))
        except ClientError as exc:
            if aws.is_not_found(exc):
                return None
            raise self.backend.refusal(f"describe the model package {shown}", exc) from None
        answer["Metrics"] = self._metrics(answer)
        return answer

    def describe(self, group, version):
        """DescribeModelPackage of GROUP/VERSION, plus Metrics; a missing version is one line."""
        names.check_group_name(group)
        answer = self._describe_arn(self.package_arn(group, version), f"{group}/{version}")
        if answer is None:
            summaries = self._summaries(group)
            listed = [s["ModelPackageArn"] for s in summaries if s.get("ModelPackageVersion") == int(version)]
            if listed:  # an ARN spelled otherwise than package_arn() guessed
                return self._describe_arn(listed[0], f"{group}/{version}")
            known = [s["ModelPackageVersion"] for s in summaries]
            if not known:
                self.describe_group(group)  # says so when the group itself is missing
            raise SmRMagicError(f"model package group {group} has no version {version}"
                                + (f" (versions: {', '.join(map(str, known))})" if known else " (it has none)"))
        return answer

    def _summaries(self, group, approval=None, limit=None):
        """ListModelPackages of a group, newest first."""
        args = {"ModelPackageGroupName": group, "SortBy": "CreationTime", "SortOrder": "Descending"}
        if approval:
            args["ModelApprovalStatus"] = approval
        pages = self.sm.get_paginator("list_model_packages").paginate(
            **args, PaginationConfig={"MaxItems": limit, "PageSize": limit} if limit else {})
        found = self.backend.asking(f"list the versions of {group}", lambda: [
            s for page in pages for s in page.get("ModelPackageSummaryList", [])])
        found.sort(key=lambda s: s.get("ModelPackageVersion") or 0, reverse=True)
        return found

    def list(self, group):
        """Every version of the group, newest first, each DescribeModelPackage-shaped plus Metrics."""
        names.check_group_name(group)
        summaries = self._summaries(group)
        if not summaries:
            self.describe_group(group)
            return []
        arns = [s["ModelPackageArn"] for s in summaries]
        with ThreadPoolExecutor(max_workers=min(PARALLEL_DESCRIBES, len(arns))) as pool:
            described = list(pool.map(lambda arn: self._describe_arn(arn, group), arns))
        return [d for d in described if d is not None]

    def update_approval(self, group, version, status, description=None):
        """UpdateModelPackage's approval (Approved, Rejected, PendingManualApproval) -> the new answer."""
        names.check_approval(status)
        current = self.describe(group, version)
        args = {"ModelPackageArn": current["ModelPackageArn"], "ModelApprovalStatus": status}
        if description is not None:
            args["ApprovalDescription"] = description
        self.backend.call(f"update the approval of {group}/{version}", self.sm.update_model_package, **args)
        return self.describe(group, version)

    def latest_approved(self, group):
        """The newest Approved version (one ListModelPackages call when there is one); an empty group, or one
        without an Approved version, is one line saying what to do."""
        names.check_group_name(group)
        approved = self._summaries(group, approval="Approved", limit=1)
        if approved:
            return self.describe(group, approved[0]["ModelPackageVersion"])
        newest = self._summaries(group, limit=1)
        if not newest:
            self.describe_group(group)
            raise SmRMagicError(f"--model-package {group}: the group has no versions yet: run the pipeline that "
                                "registers into it first")
        version, status = newest[0]["ModelPackageVersion"], newest[0]["ModelApprovalStatus"]
        raise SmRMagicError(f"--model-package {group}: no version is Approved (newest: {group}/{version}, {status}): "
                            f"approve one with %r_approve {group}/{version}, or name a version")

    # -- metrics -------------------------------------------------------------------------------------------
    def _metrics(self, answer):
        """The report a version's ModelMetrics.ModelQuality.Statistics names (its JSON), or None."""
        from botocore.exceptions import BotoCoreError, ClientError

        uri = (((answer.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}).get("S3Uri")
        if not uri or not is_s3(uri):
            return None
        bucket, key = split_s3(uri)
        try:
            body = self.backend.client("s3").get_object(Bucket=bucket, Key=key)
            if body.get("ContentLength", 0) > REPORT_MAX_BYTES:
                return None
            return json.loads(body["Body"].read())
        except (BotoCoreError, ClientError, ValueError):
            return None
