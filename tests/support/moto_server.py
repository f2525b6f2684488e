"""A moto server for tests: real HTTP on 127.0.0.1, so botocore validates every request against the real
service models and serializes it over the wire, as against AWS.

Use it from a test module with

    from tests.support.moto_server import moto_server  # noqa: F401

or `pytest_plugins = ["tests.support.moto_server"]`. The `moto_server` fixture gives a MotoServer (url,
account, region, helpers) with every AWS environment variable pointing at it: AWS_ENDPOINT_URL, fake
credentials, AWS_DEFAULT_REGION, AWS_MAX_ATTEMPTS=1 (a moto 500 fails at once instead of being retried),
no shared config or credentials files, no sm-r-magic AWS settings from the caller's environment, and no
SageMaker notebook metadata file. moto's state is reset before each test.

One ThreadedMotoServer (on a free port) serves the whole test session: it starts on first use (~0.3 s) and
is stopped when the session ends, whether tests failed or not (pytest's config cleanup, plus atexit).
moto runs in this process, so a test can also reach moto's in-process backends (`server.sagemaker()`).
"""

import atexit
import json
import logging
import threading
import urllib.request

import pytest

ACCOUNT = "123456789012"
REGION = "us-east-1"
# What a user configures for the sagemaker backend (the default bucket is derived from region and account).
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/sm-r-magic:0.1.0"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"

_lock = threading.Lock()
_server = None


class MotoServer:
    def __init__(self, server, host, port):
        self.server = server
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self.account = ACCOUNT
        self.region = REGION

    def stop(self):
        try:
            self.server.stop()
        except Exception:  # already stopped
            pass

    def post(self, path, payload=None):
        data = json.dumps(payload or {}).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def reset(self):
        """Forget every resource (moto's /moto-api/reset)."""
        self.post("/moto-api/reset")

    def seed_endpoint_results(self, results):
        """Queue sagemaker-runtime InvokeEndpoint results: [{"Body": ..., "ContentType": ...}, ...]."""
        self.post("/moto-api/static/sagemaker/endpoint-results",
                  {"account_id": self.account, "region": self.region, "results": results})

    def backend(self, service):
        """moto's in-process backend of a service for this account and region (to drive job state)."""
        from moto.backends import get_backend

        return get_backend(service)[self.account][self.region]

    def sagemaker(self):
        return self.backend("sagemaker")

    def client(self, service, **config):
        import boto3
        from botocore.config import Config

        return boto3.client(service, region_name=self.region, endpoint_url=self.url,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(retries={"max_attempts": 1}, **config))


def start_server():
    """The session's server, started on first use."""
    global _server
    with _lock:
        if _server is None:
            from moto.server import ThreadedMotoServer
            from werkzeug.serving import WSGIRequestHandler

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log lines in test output
            # werkzeug writes an error response's head and body apart on a connection it then closes; with
            # Nagle's algorithm on, the body waited for the client's delayed ACK: every S3 error (404, 412)
            # took ~12 ms longer than a success, which AWS's own front ends do not do.
            WSGIRequestHandler.disable_nagle_algorithm = True
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            _server = MotoServer(server, host, port)
            atexit.register(stop_server)
        return _server


def stop_server():
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


AWS_ENV_REMOVED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION",
                   "AWS_RETRY_MODE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                   "AWS_CONTAINER_CREDENTIALS_FULL_URI", "SM_R_MAGIC_ROLE", "SM_R_MAGIC_IMAGE", "SM_R_MAGIC_BUCKET",
                   "SM_R_MAGIC_REGION", "SM_R_MAGIC_PREFIX", "SM_R_MAGIC_BACKEND")


def point_environment_at(server, monkeypatch, tmp_path):
    for name in AWS_ENV_REMOVED:
        monkeypatch.delenv(name, raising=False)
    missing = str(tmp_path / "no-such-aws-file")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", server.region)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_CONFIG_FILE", missing)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("SM_R_MAGIC_METADATA_FILE", str(tmp_path / "no-resource-metadata.json"))


@pytest.fixture
def moto_server(request, monkeypatch, tmp_path):
    """A reset moto server with the AWS environment pointing at it (see the module docstring)."""
    server = start_server()
    if not getattr(request.config, "_sm_r_magic_moto_cleanup", False):
        request.config.add_cleanup(stop_server)  # at the end of the session, even when tests fail
        request.config._sm_r_magic_moto_cleanup = True
    server.reset()
    point_environment_at(server, monkeypatch, tmp_path)
    yield server


@pytest.fixture
def fast(monkeypatch):
    """No describe cache and no log throttle, short polls: tests see moto's changes at once."""
    from sm_r_magic.backends.sagemaker import SageMakerBackend

    monkeypatch.setattr(SageMakerBackend, "describe_ttl", 0.0)
    monkeypatch.setattr(SageMakerBackend, "log_interval", 0.0)
    monkeypatch.setattr(SageMakerBackend, "stream_rescan", 0.0)
    monkeypatch.setattr(SageMakerBackend, "poll_interval", (0.02, 0.1))
    monkeypatch.setattr(SageMakerBackend, "final_log_lag", 0.0)


@pytest.fixture
def sm(moto_server, settings, fast):
    """The settings in force configured for the sagemaker backend (role and image given, default bucket), and
    that backend."""
    from sm_r_magic.backends import get_backend

    settings.backend = "sagemaker"
    settings.image = IMAGE
    settings.role = ROLE
    settings.progress = "text"
    return get_backend("sagemaker", settings)


def put_log_events(logs, group, stream, messages):
    """Write CloudWatch log lines as a SageMaker job or endpoint would (group and stream made when missing)."""
    import time

    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    try:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName=stream,
                        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(messages)])


def capture(backend, operation):
    """The parameters of every SageMaker `operation` call the backend makes, as botocore is about to send them
    (JSON-ready copies: datetimes as text)."""
    sent = []
    backend.sm.meta.events.register(f"before-parameter-build.sagemaker.{operation}",
                                    lambda params, **kw: sent.append(json.loads(json.dumps(params, default=str))))
    return sent


def count_writes(backend):
    """Counts, kept up to date, of the backend's S3 requests: objects stored ("written": a PutObject or a
    multipart upload answered 200), PutObjects refused ("refused": 412, the content-addressed object is already
    there) and HeadObjects sent ("heads")."""
    counts = {"written": 0, "refused": 0, "heads": 0}

    def answered(http_response, model, **kwargs):
        if http_response.status_code == 200:
            counts["written"] += 1
        elif model.name == "PutObject":
            counts["refused"] += 1

    def looked(**kwargs):
        counts["heads"] += 1

    s3 = backend.client("s3")
    s3.meta.events.register("after-call.s3.PutObject", answered)
    s3.meta.events.register("after-call.s3.CreateMultipartUpload", answered)
    s3.meta.events.register("before-call.s3.HeadObject", looked)
    return counts


def s3_keys(server, bucket=BUCKET):
    """Every key in the bucket (none when it does not exist)."""
    s3 = server.client("s3")
    if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        return []
    return [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
