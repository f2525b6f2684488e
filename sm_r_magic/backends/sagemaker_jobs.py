"""Training and processing jobs on SageMaker, for the sagemaker backend: Create*/Describe*/Stop*/List* through the
backend's client and its DescribeCache, log lines from CloudWatch (cloudwatch.py). Answers as the folder
backends' jobs do (folder_jobs.py)."""

import datetime
import re

from .. import aws
from ..contract import NAME_KEY
from ..errors import SmRMagicError
from .sagemaker_part import SageMakerPart

LIST_LIMIT = 20  # what the List* calls ask for: the most recent jobs, endpoints and executions
JOB_ARN = re.compile(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:(training|processing)-job/(.+)")
LOGS_SETTLED = 60.0  # seconds after a job's end when CloudWatch has long shown all of its lines
KINDS = ("training", "processing")


def job_of_arn(arn):
    """(kind, job name) of a training or processing job's ARN, else None."""
    match = JOB_ARN.fullmatch(arn or "")
    return (match.group(1), match.group(2)) if match else None


class SageMakerJobs(SageMakerPart):
    def submit(self, kind, request):
        from ..jobs import Job

        if kind not in NAME_KEY:
            raise ValueError(f"unknown job kind {kind!r}")
        create = self.sm.create_training_job if kind == "training" else self.sm.create_processing_job
        self.backend.call(f"create the {kind} job", create, **request)
        return Job(self.backend, kind, request[NAME_KEY[kind]])

    def describe(self, kind, name):
        func = self.sm.describe_training_job if kind == "training" else self.sm.describe_processing_job
        return self.described((kind, name), lambda: func(**{NAME_KEY[kind]: name}),
                              lambda: f"no SageMaker {kind} job named {name} in {self.backend.session.region}")

    def stop(self, kind, name):
        from botocore.exceptions import ClientError

        func = self.sm.stop_training_job if kind == "training" else self.sm.stop_processing_job
        try:
            func(**{NAME_KEY[kind]: name})
        except ClientError as exc:
            if aws.error_code(exc) == "ValidationException":  # already finished / stopping
                return False
            raise
        finally:
            self.backend.forget(kind, name)
        return True

    def read_logs(self, kind, name, cursor=None):
        """New log lines of a job; none, without asking CloudWatch, once they were read to the end well after
        the job ended."""
        if (cursor or {}).get("settled"):
            return [], cursor
        lines, cursor = self.backend.log_tail.job_lines(kind, name, cursor)
        if cursor and cursor.get("drained") and self._ended_long_ago(kind, name):
            cursor = dict(cursor, settled=True)
        return lines, cursor

    def _ended_long_ago(self, kind, name):
        desc = self.backend.describes.peek((kind, name)) or {}
        ended = desc.get("TrainingEndTime") or desc.get("ProcessingEndTime")
        if not isinstance(ended, datetime.datetime) or ended.tzinfo is None:
            return False
        return (datetime.datetime.now(datetime.timezone.utc) - ended).total_seconds() > LOGS_SETTLED

    def recent(self, kind, name_contains=None, limit=LIST_LIMIT):
        """(CreationTime, name) of the newest jobs of one kind, newest first (one List call)."""
        args = {"SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": limit}
        if name_contains:
            args["NameContains"] = name_contains
        if kind == "training":
            return [(s["CreationTime"], s["TrainingJobName"]) for s in self.backend.call(
                "list training jobs", self.sm.list_training_jobs, **args).get("TrainingJobSummaries", [])]
        return [(s["CreationTime"], s["ProcessingJobName"]) for s in self.backend.call(
            "list processing jobs", self.sm.list_processing_jobs, **args).get("ProcessingJobSummaries", [])]

    def list(self):
        """The account's most recent training and processing jobs (two List calls; oldest first)."""
        from ..jobs import Job

        found = [(created, Job(self.backend, kind, name, created=created.timestamp())) for kind in KINDS
                 for created, name in self.recent(kind)]
        found.sort(key=lambda item: item[0])
        return [job for _, job in found]

    def from_arn(self, arn):
        """The Job of a pipeline step: "arn:aws:sagemaker:REGION:ACCOUNT:training-job/NAME" (or processing-job)."""
        from ..jobs import Job

        found = job_of_arn(arn)
        if not found:
            raise SmRMagicError(f"{arn!r} is not the ARN of a SageMaker training or processing job")
        return Job(self.backend, *found)

    def find(self, name):
        """The job of exactly this name (training first), or None."""
        from ..jobs import Job

        for kind in KINDS:
            try:
                self.describe(kind, name)
                return Job(self.backend, kind, name)
            except SmRMagicError:
                pass
        return None

    def latest_of_base(self, name):
        """(CreationTime, Job) of each job named `name-...` among the newest 50 of each kind."""
        from ..jobs import Job

        return [(created, Job(self.backend, kind, found)) for kind in KINDS
                for created, found in self.recent(kind, name_contains=name, limit=50)
                if found.startswith(name + "-")]
