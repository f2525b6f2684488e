"""The local model registry: model package groups and their numbered versions, under the local root.

    <local_root>/model-registry/<group>/
        group.json              CreateModelPackageGroup-shaped: name, description, creation time
        versions/<N>/package.json
                                the CreateModelPackage request, ModelApprovalStatus, CreationTime, the
                                execution that registered it (MetadataProperties.GeneratedBy), its metrics
        .lock                   serializes approval updates

Versions count 1, 2, ... per group: a new version takes the next number by creating its folder (mkdir is
atomic, so concurrent registrations never share a number). Answers are shaped like DescribeModelPackage,
ListModelPackages and DescribeModelPackageGroup, newest first always, so the sagemaker backend can answer
the same interface from the real registry."""

import datetime
import fcntl
import os
import time

from .jobfolder import atomic_write_json, read_json
from ..errors import SmRMagicError
from ..workflow import names

REGISTRY_DIR = "model-registry"


def _time(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc) if epoch else None


class LocalModelRegistry:
    def __init__(self, root):
        self.path = os.path.join(os.path.abspath(os.path.expanduser(root)), REGISTRY_DIR)

    # -- groups ------------------------------------------------------------------------------------------
    def _group_dir(self, group):
        return os.path.join(self.path, names.check_group_name(group))

    def create_group(self, group, description=None):
        """The group (made if missing; an existing group is kept as it is)."""
        folder = self._group_dir(group)
        os.makedirs(os.path.join(folder, "versions"), exist_ok=True)
        with self._locked(group):
            if not os.path.exists(os.path.join(folder, "group.json")):
                atomic_write_json(os.path.join(folder, "group.json"), {
                    "ModelPackageGroupName": group, "ModelPackageGroupDescription": description or "",
                    "CreationTime": time.time()})
        return self.describe_group(group)

    def describe_group(self, group):
        data = read_json(os.path.join(self._group_dir(group), "group.json"))
        if data is None:
            known = self.group_names()
            raise SmRMagicError(f"no model package group {group!r} in the local registry"
                                + (f" (groups: {', '.join(known)})" if known else " (it has no groups yet)"))
        return {"ModelPackageGroupName": group, "ModelPackageGroupArn": f"local:model-package-group/{group}",
                "ModelPackageGroupDescription": data.get("ModelPackageGroupDescription", ""),
                "CreationTime": _time(data.get("CreationTime")), "ModelPackageGroupStatus": "Completed"}

    def group_names(self):
        if not os.path.isdir(self.path):
            return []
        return sorted(name for name in os.listdir(self.path)
                      if os.path.exists(os.path.join(self.path, name, "group.json")))

    def list_groups(self):
        """ListModelPackageGroups-shaped, newest first."""
        groups = [self.describe_group(name) for name in self.group_names()]
        groups.sort(key=lambda g: g["CreationTime"], reverse=True)
        return {"ModelPackageGroupSummaryList": groups}

    # -- versions ----------------------------------------------------------------------------------------
    def register(self, request, generated_by=None, metrics=None):
        """Add a version from a CreateModelPackage request (the group is made if missing, as a pipeline's
        RegisterModel step does); returns its DescribeModelPackage answer."""
        group = request.get("ModelPackageGroupName")
        containers = (request.get("InferenceSpecification") or {}).get("Containers") or []
        if not containers or not all(c.get("Image") for c in containers):
            raise SmRMagicError("a model package needs InferenceSpecification.Containers with an Image")
        status = names.check_approval(request.get("ModelApprovalStatus") or "PendingManualApproval")
        self.create_group(group)
        version = self._claim_version(group)
        record = {"Request": request, "ModelApprovalStatus": status, "CreationTime": time.time(),
                  "LastModifiedTime": time.time(), "GeneratedBy": generated_by, "Metrics": metrics}
        atomic_write_json(self._package_file(group, version), record)
        return self.describe(group, version)

    def _claim_version(self, group):
        versions = os.path.join(self._group_dir(group), "versions")
        number = max(self._numbers(versions, claimed=True), default=0) + 1
        while True:
            try:
                os.mkdir(os.path.join(versions, str(number)))
                return number
            except FileExistsError:
                number += 1

    @staticmethod
    def _numbers(folder, claimed=False):
        """Version numbers in `folder`: written ones, or also those claimed but not yet written."""
        if not os.path.isdir(folder):
            return []
        return [int(name) for name in os.listdir(folder) if name.isdigit()
                and (claimed or os.path.exists(os.path.join(folder, name, "package.json")))]

    def _package_file(self, group, version):
        return os.path.join(self._group_dir(group), "versions", str(version), "package.json")

    def describe(self, group, version):
        """DescribeModelPackage-shaped (plus Metrics: the evaluation report's content)."""
        record = read_json(self._package_file(group, version))
        if record is None:
            self.describe_group(group)  # says so if the group itself is missing
            known = self.versions(group)
            raise SmRMagicError(f"model package group {group} has no version {version}"
                                + (f" (versions: {', '.join(map(str, known))})" if known else " (it has none)"))
        request = record["Request"]
        answer = {key: value for key, value in request.items() if key not in ("ModelApprovalStatus",)}
        answer.update({
            "ModelPackageName": group, "ModelPackageGroupName": group, "ModelPackageVersion": version,
            "ModelPackageArn": f"local:model-package/{group}/{version}",
            "CreationTime": _time(record["CreationTime"]), "LastModifiedTime": _time(record.get("LastModifiedTime")),
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
            "ModelApprovalStatus": record["ModelApprovalStatus"], "Metrics": record.get("Metrics")})
        if record.get("GeneratedBy"):
            answer["MetadataProperties"] = {"GeneratedBy": record["GeneratedBy"]}
        if record.get("ApprovalDescription"):
            answer["ApprovalDescription"] = record["ApprovalDescription"]
        return answer

    def versions(self, group):
        """Version numbers of a group, newest first."""
        return sorted(self._numbers(os.path.join(self._group_dir(group), "versions")), reverse=True)

    def list_packages(self, group, approval=None):
        """ListModelPackages-shaped summaries of a group's versions, newest first; approval filters."""
        self.describe_group(group)
        summaries = []
        for version in self.versions(group):
            d = self.describe(group, version)
            if approval and d["ModelApprovalStatus"] != approval:
                continue
            summaries.append({key: d.get(key) for key in (
                "ModelPackageName", "ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn",
                "ModelPackageDescription", "CreationTime", "ModelPackageStatus", "ModelApprovalStatus")
                if d.get(key) is not None})
        return {"ModelPackageSummaryList": summaries}

    def update_approval(self, group, version, status, description=None):
        """UpdateModelPackage's approval: Approved, Rejected or PendingManualApproval."""
        names.check_approval(status)
        with self._locked(group):
            path = self._package_file(group, version)
            record = read_json(path)
            if record is None:
                self.describe(group, version)  # raises the right message
            record.update(ModelApprovalStatus=status, LastModifiedTime=time.time())
            if description is not None:
                record["ApprovalDescription"] = description
            atomic_write_json(path, record)
        return self.describe(group, version)

    def list(self, group):
        """Every version of a group, newest first, DescribeModelPackage-shaped (a missing group is one line)."""
        self.describe_group(group)
        return [self.describe(group, version) for version in self.versions(group)]

    def latest_approved(self, group):
        """The newest Approved version (what --model-package GROUP deploys)."""
        versions = self.versions(group) if self.describe_group(group) else []
        if not versions:
            raise SmRMagicError(f"--model-package {group}: the group has no versions yet: run the pipeline that "
                                "registers into it first")
        for version in versions:
            described = self.describe(group, version)
            if described["ModelApprovalStatus"] == "Approved":
                return described
        newest = self.describe(group, versions[0])["ModelApprovalStatus"]
        raise SmRMagicError(f"--model-package {group}: no version is Approved (newest: {group}/{versions[0]}, "
                            f"{newest}): approve one with %r_approve {group}/{versions[0]}, or name a version")

    def _locked(self, group):
        return _FileLock(os.path.join(self._group_dir(group), ".lock"))


class _FileLock:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._fh = open(self.path, "a")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
