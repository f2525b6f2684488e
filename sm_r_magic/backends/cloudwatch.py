"""Reading a SageMaker job's or endpoint's logs from CloudWatch Logs, cheaply whoever asks.

A read costs one GetLogEvents per log stream (one stream per instance); streams are listed again every
`stream_rescan` seconds until every instance has one (then every five times that). While a job runs, logs are
read no more often than its description is refreshed; once it has ended, at once, and the first read after the
end waits until `final_log_lag` seconds after it (CloudWatch shows the last lines, an R traceback, a few seconds
late). A missing log group or stream (the job has not started yet) is no error: nothing new.
"""

import datetime
import time

from .. import aws
from ..contract import JOB_TERMINAL, STATUS_KEY

JOB_LOG_GROUP = {"training": "/aws/sagemaker/TrainingJobs", "processing": "/aws/sagemaker/ProcessingJobs"}
ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints/{name}"
FULL_PAGE_EVENTS, FULL_PAGE_BYTES = 10000, 900_000  # a page this big may have more behind it


class LogTail:
    def __init__(self, backend):
        self.backend = backend

    @property
    def logs(self):
        return self.backend.client("logs")

    def _too_soon(self, key, cursor, final):
        read_at = (cursor or {}).get("read_at")
        interval = self.backend.describes.ttl(key, self.backend.log_interval)
        return bool(read_at) and not final and time.monotonic() - read_at < interval

    def job_lines(self, kind, name, cursor=None):
        desc = self.backend.describes.peek((kind, name)) or {}
        final = desc.get(STATUS_KEY[kind]) in JOB_TERMINAL
        if self._too_soon((kind, name), cursor, final):
            return [], cursor
        if final and not (cursor or {}).get("drained"):
            self._wait_for_last_lines(desc)
        instances = (desc.get("ResourceConfig") or desc.get("ProcessingResources", {}).get("ClusterConfig")
                     or {}).get("InstanceCount")
        lines, cursor = self.tail(JOB_LOG_GROUP[kind], f"{name}/", cursor, expected_streams=instances)
        if final:
            cursor["drained"] = True
        return lines, cursor

    def endpoint_lines(self, name, cursor=None):
        if self._too_soon(("endpoint", name), cursor, False):
            return [], cursor
        return self.tail(ENDPOINT_LOG_GROUP.format(name=name), "", cursor)

    def _wait_for_last_lines(self, desc):
        ended = desc.get("TrainingEndTime") or desc.get("ProcessingEndTime") or desc.get("LastModifiedTime")
        if not isinstance(ended, datetime.datetime) or ended.tzinfo is None:
            return
        since = (datetime.datetime.now(datetime.timezone.utc) - ended).total_seconds()
        lag = self.backend.final_log_lag
        if 0 <= since < lag:
            time.sleep(lag - since)

    def _streams(self, group, stream_prefix, tokens):
        """Add every stream of `group` starting with `stream_prefix` to `tokens`; False if the group is missing."""
        from botocore.exceptions import ClientError

        args = {"logGroupName": group, **({"logStreamNamePrefix": stream_prefix} if stream_prefix else {})}
        try:
            for page in self.logs.get_paginator("describe_log_streams").paginate(**args):
                for stream in page.get("logStreams", []):
                    tokens.setdefault(stream["logStreamName"], None)
        except ClientError as exc:
            if aws.is_not_found(exc):
                return False
            raise
        return True

    def _events(self, group, stream, tokens):
        from botocore.exceptions import ClientError

        events = []
        args = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        while True:
            if tokens[stream]:
                args["nextToken"] = tokens[stream]
            try:
                page = self.logs.get_log_events(**args)
            except ClientError as exc:
                if aws.is_not_found(exc):
                    return events
                raise
            batch = page.get("events", [])
            tokens[stream] = page.get("nextForwardToken") or tokens[stream]
            events += [(e.get("timestamp", 0), stream, e.get("message", "")) for e in batch]
            size = sum(len(e.get("message", "")) + 26 for e in batch)
            if len(batch) < FULL_PAGE_EVENTS and size < FULL_PAGE_BYTES:
                return events

    def tail(self, group, stream_prefix, cursor, expected_streams=None):
        """New events of every stream of `group` starting with `stream_prefix` -> (lines, cursor).

        cursor: {"tokens": {stream: nextForwardToken}, "scanned": monotonic time of the last stream listing}."""
        now = time.monotonic()
        cursor = {"tokens": dict((cursor or {}).get("tokens", {})), "scanned": (cursor or {}).get("scanned"),
                  "read_at": now}
        tokens = cursor["tokens"]
        all_found = bool(expected_streams) and len(tokens) >= expected_streams
        rescan = self.backend.stream_rescan * (5 if all_found else 1)
        if not tokens or cursor["scanned"] is None or now - cursor["scanned"] >= rescan:
            if not self._streams(group, stream_prefix, tokens):
                return [], cursor
            cursor["scanned"] = now
        events = []
        for stream in sorted(tokens):
            events += self._events(group, stream, tokens)
        events.sort(key=lambda e: e[0])  # interleave instances by time (sort is stable within a stream)
        several = len(tokens) > 1
        lines = []
        for _, stream, message in events:
            for line in message.rstrip("\n").split("\n"):
                lines.append(f"[{stream[len(stream_prefix):]}] {line}" if several else line)
        return lines, cursor
