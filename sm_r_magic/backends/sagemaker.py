"""The sagemaker backend: the same request dicts the local backend executes, sent to the real service with
boto3 (S3 upload, Create*/Describe*/Stop*, CloudWatch Logs tail, sagemaker-runtime InvokeEndpoint).

S3 layout under s3://<bucket>/<prefix>/ (all content-addressed, so a repeat submission uploads nothing):
    sourcedir/<sha256>/sourcedir.tar.gz      the cell's code (and --file / --source-dir files)
    data/<sha256>/<basename>[/]              a local file or folder given as an input or channel
    models/<sha256>/<basename>               a local model.tar.gz given to deploy
    output/                                  training output path; output/<job>/<name> processing outputs

Watching is cheap whoever asks (the foreground wait loop, a widget's poller thread, %r_jobs, several
handles of one job): a description is reused for `describe_ttl` seconds, and that time grows with how long
the job has been watched (a tenth of it, up to the 30 s poll ceiling); CloudWatch Logs is read at most as
often (but at once when the job has ended, so its last lines are not held back); each read costs one
GetLogEvents per log stream, and streams are listed again every `stream_rescan` seconds until every instance
has one (then every five times that). The wait loop's own interval backs off from 5 s to 30 s. A job watched for a long
time costs about two DescribeTrainingJob and two GetLogEvents calls a minute; adaptive retries add
client-side rate limiting if SageMaker throttles anyway (see benchmarks/bench_submit.py).
"""

import hashlib
import os
import tarfile
import threading
import time

import boto3  # noqa: F401  (imported here so that a missing boto3 is reported by get_backend)

from .. import aws, spec
from ..errors import SmRMagicError
from ..sourcedir import file_sha256, member_names
from .base import Backend, local_model_tarball, local_path

STATUS_KEY = {"training": "TrainingJobStatus", "processing": "ProcessingJobStatus"}
NAME_KEY = {"training": "TrainingJobName", "processing": "ProcessingJobName"}
LOG_GROUP = {"training": "/aws/sagemaker/TrainingJobs", "processing": "/aws/sagemaker/ProcessingJobs"}
ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints/{name}"
LIST_LIMIT = 20


_hash_file = file_sha256


def _folder_files(root):
    """Relative path (with /) -> absolute path of every regular file under root, sorted."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path):
                found[os.path.relpath(path, root).replace(os.sep, "/")] = path
    return dict(sorted(found.items()))


def _strip(response):
    response = dict(response)
    response.pop("ResponseMetadata", None)
    return response


class SageMakerBackend(Backend):
    name = "sagemaker"
    poll_interval = (5.0, 30.0)  # seconds between status polls while waiting: backs off from 5 to 30
    describe_ttl = 5.0           # a description is reused at least this long (0: no cache), see _ttl()
    log_interval = 5.0           # CloudWatch Logs is read at least this far apart while a job runs (0: always)
    stream_rescan = 60.0         # list a job's log streams again at most this often, until all instances have one
    final_log_lag = 5.0          # CloudWatch shows a job's last lines a few seconds after it ended: wait that long
    ttl_growth = 0.1             # the reuse time grows to this fraction of the time the job has been watched

    def __init__(self, config):
        super().__init__(config)
        self._session = None
        self._session_key = None
        self._lock = threading.Lock()
        self._describes = {}      # (kind, name) -> (monotonic time, description)
        self._first_seen = {}     # (kind, name) -> monotonic time of the first describe in this process
        self._local = {}          # s3 uri -> (local path, is_folder, {relative key: local path})
        self._hashes = {}         # (path, size, mtime_ns) -> sha256 of a local file
        self._bucket_ready = set()
        self.api_calls = 0        # every AWS request made through this backend (benchmarks, tests)

    # -- session ---------------------------------------------------------------------------------------
    @property
    def session(self):
        """The boto3 session, rebuilt when the region, profile or endpoint changes."""
        key = (self.config.region, os.environ.get("AWS_PROFILE"), os.environ.get("AWS_ENDPOINT_URL"),
               os.environ.get("AWS_DEFAULT_REGION"))
        with self._lock:
            if self._session is None or key != self._session_key:
                self._session = aws.AwsSession(region=self.config.region or None)
                self._session_key = key
                self._bucket_ready = set()
                self._session.boto.events.register("before-call", self._count)
            return self._session

    def _count(self, **kwargs):
        self.api_calls += 1

    def client(self, service):
        return self.session.client(service)

    @property
    def sm(self):
        return self.client("sagemaker")

    @property
    def s3(self):
        return self.client("s3")

    @property
    def logs(self):
        return self.client("logs")

    def _call(self, what, func, **kwargs):
        """An AWS call whose failure the user can act on becomes a one-line SmRMagicError."""
        from botocore.exceptions import ClientError, NoCredentialsError

        try:
            return func(**kwargs)
        except NoCredentialsError:
            raise SmRMagicError(aws.CREDENTIALS_HINT) from None
        except ClientError as exc:
            code = aws.error_code(exc)
            if code in ("ValidationException", "ResourceLimitExceeded", "ResourceInUse", "AccessDeniedException",
                        "AccessDenied"):
                raise SmRMagicError(f"SageMaker refused to {what}: {code}: {aws.error_message(exc)}") from None
            raise

    # -- settings ----------------------------------------------------------------------------------------
    def check_ready(self):
        """Region, image, role and bucket name, in that order; nothing is created or uploaded."""
        session = self.session  # region
        session.identity()  # credentials: one line now, not a botocore traceback at the first S3 call
        aws.check_image(self.config.image)
        session.role_arn(self.config.role)
        self.bucket()

    def image(self):
        return aws.check_image(self.config.image)

    def role(self):
        return self.session.role_arn(self.config.role)

    def bucket(self):
        if self.config.bucket:
            name = self.config.bucket
            if name.startswith("s3://"):
                name = name[len("s3://"):].strip("/")
            return aws.check_bucket_name(name)
        session = self.session
        return aws.check_bucket_name(aws.default_bucket_name(session.region, session.account))

    @property
    def prefix(self):
        return (self.config.prefix or "").strip("/")

    def _uri(self, *parts):
        key = "/".join(p.strip("/") for p in (self.prefix, *parts) if p)
        return f"s3://{self.bucket()}/{key}"

    # -- URIs (pure apart from hashing local files) -----------------------------------------------------
    def code_uri(self, sourcedir):
        return self._uri("sourcedir", sourcedir.sha256, spec.SOURCEDIR_NAME)

    def _file_sha(self, path):
        st = os.stat(path)
        # ctime changes on every write and cannot be set back (unlike mtime): a rewritten file is re-hashed
        key = (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if key not in self._hashes:
            self._hashes[key] = _hash_file(path)
        return self._hashes[key]

    def _content_address(self, path, area):
        """Content-addressed S3 URI of a local file or folder; remembered for upload()."""
        base = os.path.basename(path.rstrip(os.sep)) or "data"
        if os.path.isdir(path):
            files = _folder_files(path)
            digest = hashlib.sha256()
            for rel, full in files.items():
                digest.update(rel.encode() + b"\0" + self._file_sha(full).encode() + b"\n")
            uri = self._uri(area, digest.hexdigest(), base) + "/"
            self._local[uri] = (path, True, files)
        else:
            uri = self._uri(area, self._file_sha(path), base)
            self._local[uri] = (path, False, {"": path})
        return uri

    def data_uri(self, uri, option):
        if uri.startswith("s3://"):
            return uri
        if "://" in uri and not uri.startswith("file://"):
            raise SmRMagicError(f"{option}: {uri} is neither a local path nor an s3:// URI")
        return self._content_address(local_path(uri, option), "data")

    def output_uri(self, uri, option):
        if uri.startswith("s3://"):
            return uri
        raise SmRMagicError(f"{option}: sagemaker jobs write their outputs to S3: give an s3:// URI, or no URI "
                            "for the default location")

    def training_output_path(self):
        return self._uri("output")

    def processing_output_uri(self, job_name, output_name):
        return self._uri("output", job_name, output_name)

    def model_data_uri(self, uri):
        if uri.startswith("s3://"):
            return uri
        return self._content_address(local_model_tarball(uri), "models")

    # -- upload ----------------------------------------------------------------------------------------
    def ensure_bucket(self):
        from botocore.exceptions import ClientError

        bucket = self.bucket()
        if bucket in self._bucket_ready:
            return bucket
        try:
            self.s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 403:
                raise SmRMagicError(f"the S3 bucket {bucket} exists but is not accessible with these credentials: "
                                    '%config RMagic.bucket = "my-bucket" (or SM_R_MAGIC_BUCKET)') from None
            if status != 404 and aws.error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            if self.config.bucket:
                raise SmRMagicError(f"the S3 bucket {bucket} does not exist: create it, or leave RMagic.bucket "
                                    "empty to use sagemaker-{region}-{account}") from None
            args = {"Bucket": bucket}
            if self.session.region != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": self.session.region}
            try:
                self.s3.create_bucket(**args)
            except ClientError as create_exc:
                if aws.error_code(create_exc) not in ("BucketAlreadyOwnedByYou",):
                    raise SmRMagicError(f"could not create the S3 bucket {bucket} "
                                        f"({aws.error_message(create_exc)}): %config RMagic.bucket = \"my-bucket\"") \
                        from None
        self._bucket_ready.add(bucket)
        return bucket

    def _exists(self, bucket, key):
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404 or aws.is_not_found(exc):
                return False
            raise

    def _transfer_config(self):
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=4)

    def upload(self, sourcedir, data_uris=()):
        """sourcedir.tar.gz and any local data the request names, each only if not already in S3."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import ClientError, NoCredentialsError

        try:
            self.ensure_bucket()
            return self._upload(sourcedir, data_uris)
        except NoCredentialsError:
            raise SmRMagicError(aws.CREDENTIALS_HINT) from None
        except (ClientError, S3UploadFailedError) as exc:
            detail = f"{aws.error_code(exc)}: {aws.error_message(exc)}" if isinstance(exc, ClientError) else str(exc)
            raise SmRMagicError(f"could not upload to s3://{self.bucket()}/{self.prefix} ({detail}): check the "
                                "bucket (RMagic.bucket) and your S3 permissions") from None

    def _upload(self, sourcedir, data_uris):
        uploaded = []
        bucket, key = aws.split_s3(self.code_uri(sourcedir))
        if not self._exists(bucket, key):
            self.s3.upload_file(sourcedir.path, bucket, key, Config=self._transfer_config())
            uploaded.append(f"s3://{bucket}/{key}")
        uris = data_uris.values() if isinstance(data_uris, dict) else data_uris
        for uri in uris:
            uploaded += self._upload_local(uri)
        return uploaded

    def _upload_local(self, uri):
        if uri not in self._local:
            return []
        path, is_folder, files = self._local[uri]
        bucket, key = aws.split_s3(uri)
        uploaded = []
        if is_folder:
            prefix = key.rstrip("/") + "/"
            present = set()
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                present.update(obj["Key"] for obj in page.get("Contents", []))
            for rel, full in files.items():
                if prefix + rel not in present:
                    self.s3.upload_file(full, bucket, prefix + rel, Config=self._transfer_config())
                    uploaded.append(f"s3://{bucket}/{prefix}{rel}")
        elif not self._exists(bucket, key):
            self.s3.upload_file(path, bucket, key, Config=self._transfer_config())
            uploaded.append(uri)
        return uploaded

    CODE_FILES_MAX_BYTES = 20 << 20  # a job's code is read back to list its files only up to this size

    def code_files(self, code_uri):
        """The file names in a job's sourcedir.tar.gz in S3 (one GetObject), or None when unreadable."""
        import io

        from botocore.exceptions import BotoCoreError, ClientError

        if not code_uri.startswith("s3://"):
            return super().code_files(code_uri)
        bucket, key = aws.split_s3(code_uri)
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)
            if body.get("ContentLength", 0) > self.CODE_FILES_MAX_BYTES:
                return None
            return member_names(io.BytesIO(body["Body"].read()))
        except (BotoCoreError, ClientError, OSError, tarfile.TarError):
            return None

    # -- jobs --------------------------------------------------------------------------------------------
    def submit(self, kind, request):
        from ..jobs import Job

        if kind == "training":
            self._call("create the training job", self.sm.create_training_job, **request)
        elif kind == "processing":
            self._call("create the processing job", self.sm.create_processing_job, **request)
        else:
            raise ValueError(f"unknown job kind {kind!r}")
        return Job(self, kind, request[NAME_KEY[kind]])

    def forget(self, kind=None, name=None):
        """Drop cached descriptions (all, or one job's) so the next describe asks SageMaker."""
        with self._lock:
            if name is None:
                self._describes.clear()
            else:
                self._describes.pop((kind, name), None)

    def _ttl(self, key, base):
        """How long a description (or a log read) of `key` stays fresh: `base` at first, then a tenth of
        the time the job has been watched, never more than the slowest poll interval."""
        if base <= 0:
            return 0.0
        first = self._first_seen.get(key)
        age = time.monotonic() - first if first else 0.0
        return min(max(base, self.poll_interval[1]), max(base, age * self.ttl_growth))

    def _describe_cached(self, key, fetch):
        now = time.monotonic()
        with self._lock:
            hit = self._describes.get(key)
            self._first_seen.setdefault(key, now)
        if hit and now - hit[0] < self._ttl(key, self.describe_ttl):
            return hit[1]
        desc = _strip(fetch())
        with self._lock:
            self._describes[key] = (time.monotonic(), desc)
        return desc

    def describe_job(self, kind, name):
        from botocore.exceptions import ClientError

        func = self.sm.describe_training_job if kind == "training" else self.sm.describe_processing_job
        try:
            return self._describe_cached((kind, name), lambda: func(**{NAME_KEY[kind]: name}))
        except ClientError as exc:
            if aws.is_not_found(exc):
                raise SmRMagicError(f"no SageMaker {kind} job named {name} in {self.session.region}") from None
            raise

    def stop_job(self, kind, name):
        from botocore.exceptions import ClientError

        func = self.sm.stop_training_job if kind == "training" else self.sm.stop_processing_job
        try:
            func(**{NAME_KEY[kind]: name})
        except ClientError as exc:
            if aws.error_code(exc) == "ValidationException":  # already finished / stopping
                return False
            raise
        finally:
            self.forget(kind, name)
        return True

    # -- logs ----------------------------------------------------------------------------------------------
    def _too_soon(self, key, cursor, final):
        """Progress views may ask for logs every half second: read CloudWatch no more often than a job's
        description is refreshed, except once the job has ended (its last lines must not wait)."""
        read_at = (cursor or {}).get("read_at")
        return bool(read_at) and not final and time.monotonic() - read_at < self._ttl(key, self.log_interval)

    def read_logs(self, kind, name, cursor=None):
        with self._lock:
            hit = self._describes.get((kind, name))
        desc = hit[1] if hit else {}
        final = desc.get(STATUS_KEY[kind]) in ("Completed", "Failed", "Stopped")
        if self._too_soon((kind, name), cursor, final):
            return [], cursor
        if final and not (cursor or {}).get("drained"):
            self._wait_for_last_lines(desc)
        instances = (desc.get("ResourceConfig") or desc.get("ProcessingResources", {}).get("ClusterConfig")
                     or {}).get("InstanceCount")
        lines, cursor = self._tail(LOG_GROUP[kind], f"{name}/", cursor, expected_streams=instances)
        if final:
            cursor["drained"] = True
        return lines, cursor

    def _wait_for_last_lines(self, desc):
        """The first read after a job ended waits until `final_log_lag` seconds after its end, so that the
        last lines (an R traceback) have reached CloudWatch; a job seen ending long ago costs nothing."""
        import datetime

        ended = (desc.get("TrainingEndTime") or desc.get("ProcessingEndTime") or desc.get("LastModifiedTime"))
        if not isinstance(ended, datetime.datetime) or ended.tzinfo is None:
            return
        since = (datetime.datetime.now(datetime.timezone.utc) - ended).total_seconds()
        if 0 <= since < self.final_log_lag:
            time.sleep(self.final_log_lag - since)

    def read_endpoint_logs(self, name, cursor=None):
        if self._too_soon(("endpoint", name), cursor, False):
            return [], cursor
        return self._tail(ENDPOINT_LOG_GROUP.format(name=name), "", cursor)

    def _tail(self, group, stream_prefix, cursor, expected_streams=None):
        """New events of every stream of `group` starting with `stream_prefix` -> (lines, cursor).

        cursor: {"tokens": {stream: nextForwardToken}, "scanned": monotonic time of the last stream listing}.
        A missing log group or stream (the job has not started yet) is no error: nothing new."""
        from botocore.exceptions import ClientError

        now = time.monotonic()
        cursor = {"tokens": dict((cursor or {}).get("tokens", {})), "scanned": (cursor or {}).get("scanned"),
                  "read_at": now}
        tokens = cursor["tokens"]
        # Every instance has a stream: look for new ones (a restarted spot instance) only every 5 rescans.
        all_found = bool(expected_streams) and len(tokens) >= expected_streams
        rescan = self.stream_rescan * (5 if all_found else 1)
        if not tokens or cursor["scanned"] is None or now - cursor["scanned"] >= rescan:
            try:
                pages = self.logs.get_paginator("describe_log_streams").paginate(
                    logGroupName=group, logStreamNamePrefix=stream_prefix) if stream_prefix else \
                    self.logs.get_paginator("describe_log_streams").paginate(logGroupName=group)
                for page in pages:
                    for stream in page.get("logStreams", []):
                        tokens.setdefault(stream["logStreamName"], None)
            except ClientError as exc:
                if aws.is_not_found(exc):
                    return [], cursor
                raise
            cursor["scanned"] = now
        events = []
        for stream in sorted(tokens):
            args = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
            while True:
                if tokens[stream]:
                    args["nextToken"] = tokens[stream]
                try:
                    page = self.logs.get_log_events(**args)
                except ClientError as exc:
                    if aws.is_not_found(exc):
                        break
                    raise
                batch = page.get("events", [])
                tokens[stream] = page.get("nextForwardToken") or tokens[stream]
                events += [(e.get("timestamp", 0), stream, e.get("message", "")) for e in batch]
                # A full page (10,000 events or 1 MB) may have more behind it; otherwise we are caught up.
                size = sum(len(e.get("message", "")) + 26 for e in batch)
                if len(batch) < 10000 and size < 900_000:
                    break
        events.sort(key=lambda e: e[0])  # interleave instances by time (sort is stable within a stream)
        several = len(tokens) > 1
        lines = []
        for _, stream, message in events:
            for line in message.rstrip("\n").split("\n"):
                lines.append(f"[{stream[len(stream_prefix):]}] {line}" if several else line)
        return lines, cursor

    # -- listing and attaching -----------------------------------------------------------------------------
    def _recent(self, kind, name_contains=None, limit=LIST_LIMIT):
        args = {"SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": limit}
        if name_contains:
            args["NameContains"] = name_contains
        if kind == "training":
            return [(s["CreationTime"], s["TrainingJobName"]) for s in self._call(
                "list training jobs", self.sm.list_training_jobs, **args).get("TrainingJobSummaries", [])]
        return [(s["CreationTime"], s["ProcessingJobName"]) for s in self._call(
            "list processing jobs", self.sm.list_processing_jobs, **args).get("ProcessingJobSummaries", [])]

    def list_jobs(self):
        """The account's most recent training and processing jobs (two List calls; oldest first)."""
        from ..jobs import Job

        found = [(created, Job(self, kind, name, created=created.timestamp())) for kind in ("training", "processing")
                 for created, name in self._recent(kind)]
        found.sort(key=lambda item: item[0])
        return [job for _, job in found]

    def attach(self, name):
        """A job or endpoint by exact name, else the latest job/endpoint whose name starts with `name-`."""
        from botocore.exceptions import ClientError

        from ..jobs import Job

        for kind in ("training", "processing"):
            try:
                self.describe_job(kind, name)
                return Job(self, kind, name)
            except SmRMagicError:
                pass
        try:
            self.describe_endpoint(name)
            return self._predictor(name)
        except SmRMagicError:
            pass
        candidates = [(created, "job", kind, found) for kind in ("training", "processing")
                      for created, found in self._recent(kind, name_contains=name, limit=50)
                      if found.startswith(name + "-")]
        try:
            endpoints = self.sm.list_endpoints(SortBy="CreationTime", SortOrder="Descending", NameContains=name,
                                               MaxResults=50).get("Endpoints", [])
        except ClientError:
            endpoints = []
        candidates += [(e["CreationTime"], "endpoint", None, e["EndpointName"]) for e in endpoints
                       if e["EndpointName"].startswith(name + "-")]
        if not candidates:
            raise SmRMagicError(f"no SageMaker job or endpoint named {name} (or {name}-...) in "
                                f"{self.session.region}: list them with %r_jobs --backend sagemaker")
        _, what, kind, found = max(candidates, key=lambda item: item[0])
        return Job(self, kind, found) if what == "job" else self._predictor(found)

    # -- endpoints -------------------------------------------------------------------------------------------
    def _predictor(self, name):
        from ..predictor import Predictor

        return Predictor(self, name)

    def deploy(self, requests, keep=False):
        """CreateModel, CreateEndpointConfig, CreateEndpoint; returns a Predictor at once (Creating).

        Any local model.tar.gz named by model_data_uri() is uploaded first. If a later step fails, what was
        created is deleted again. `keep` has no effect: SageMaker endpoints live until deleted."""
        model, config, endpoint = requests["model"], requests["endpoint_config"], requests["endpoint"]
        data = model.get("PrimaryContainer", {}).get("ModelDataUrl")
        if data in self._local:
            self.ensure_bucket()
            self._upload_local(data)
        created = []
        try:
            self._call("create the model", self.sm.create_model, **model)
            created.append(("model", model["ModelName"]))
            self._call("create the endpoint config", self.sm.create_endpoint_config, **config)
            created.append(("config", config["EndpointConfigName"]))
            self._call("create the endpoint", self.sm.create_endpoint, **endpoint)
        except Exception:
            for what, name in reversed(created):
                try:
                    if what == "config":
                        self.sm.delete_endpoint_config(EndpointConfigName=name)
                    else:
                        self.sm.delete_model(ModelName=name)
                except Exception:
                    pass
            raise
        return self._predictor(endpoint["EndpointName"])

    def describe_endpoint(self, name):
        from botocore.exceptions import ClientError

        try:
            return self._describe_cached(("endpoint", name), lambda: self.sm.describe_endpoint(EndpointName=name))
        except ClientError as exc:
            if aws.is_not_found(exc):
                raise SmRMagicError(f"no SageMaker endpoint named {name} in {self.session.region}") from None
            raise

    def invoke_endpoint(self, name, body, content_type, accept):
        from botocore.exceptions import ClientError

        from ..predictor import InvocationError

        if isinstance(body, str):
            body = body.encode("utf-8")
        args = {"EndpointName": name, "Body": body, "ContentType": content_type}
        if accept:
            args["Accept"] = accept
        try:
            response = self.client("sagemaker-runtime").invoke_endpoint(**args)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            if aws.error_code(exc) == "ModelError":  # the container answered an error: its status and body
                status = exc.response.get("OriginalStatusCode") or err.get("OriginalStatusCode") or 500
                message = exc.response.get("OriginalMessage") or err.get("OriginalMessage") or err.get("Message", "")
                raise InvocationError(int(status), message) from None
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500
            raise InvocationError(int(status), f"{aws.error_code(exc)}: {err.get('Message', str(exc))}") from None
        return response["Body"].read(), response.get("ContentType")

    def delete_endpoint(self, name):
        """Delete the endpoint, then its endpoint config and model(s); parts already gone are skipped."""
        from botocore.exceptions import ClientError

        config_name, models = None, []
        try:
            config_name = self.sm.describe_endpoint(EndpointName=name)["EndpointConfigName"]
        except ClientError as exc:
            if not aws.is_not_found(exc):
                raise
        if config_name:
            try:
                config = self.sm.describe_endpoint_config(EndpointConfigName=config_name)
                models = [v["ModelName"] for v in config.get("ProductionVariants", []) if v.get("ModelName")]
            except ClientError as exc:
                if not aws.is_not_found(exc):
                    raise
        steps = [(self.sm.delete_endpoint, {"EndpointName": name})]
        if config_name:
            steps.append((self.sm.delete_endpoint_config, {"EndpointConfigName": config_name}))
        steps += [(self.sm.delete_model, {"ModelName": model}) for model in models]
        for func, args in steps:
            try:
                func(**args)
            except ClientError as exc:
                if not aws.is_not_found(exc):
                    raise
        self.forget("endpoint", name)
        return True

    def list_endpoints(self):
        response = self._call("list endpoints", self.sm.list_endpoints, SortBy="CreationTime", SortOrder="Descending",
                              MaxResults=LIST_LIMIT)
        return [self._predictor(e["EndpointName"]) for e in reversed(response.get("Endpoints", []))]
