"""AWS session set-up for the sagemaker backend, without the SageMaker SDK.

Region, account, execution role (configured, or discovered the way SageMaker notebook instances and Studio
expose it, or the caller's own role), default bucket and the shared image URI; boto3 clients with retry
settings suited to watching many jobs. boto3 is imported inside functions only: `%load_ext sm_r_magic` and
`import sm_r_magic.aws` stay cheap.

Every missing setting becomes a one-line SmRMagicError that says which setting to give and how.
"""

import json
import os
import re
import threading

from .errors import SmRMagicError

# SageMaker notebook instances and Studio apps describe themselves in this file; tests point elsewhere.
METADATA_ENV = "SM_R_MAGIC_METADATA_FILE"
DEFAULT_METADATA_FILE = "/opt/ml/metadata/resource-metadata.json"

ROLE_HINT = ('give the SageMaker execution role: %config RMagic.role = "arn:aws:iam::<account>:role/<name>" '
             "(or set SM_R_MAGIC_ROLE)")
IMAGE_HINT = ("build and push the shared R image with `sm-r-magic image build --push`, then "
              '%config RMagic.image = "<account>.dkr.ecr.<region>.amazonaws.com/sm-r-magic:<tag>" '
              "(or set SM_R_MAGIC_IMAGE)")
REGION_HINT = ('give the AWS region: %config RMagic.region = "us-east-1" '
               "(or set SM_R_MAGIC_REGION / AWS_DEFAULT_REGION)")
CREDENTIALS_HINT = ("no AWS credentials found: configure them (aws configure, AWS_PROFILE, environment "
                    "variables or an instance role)")

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
ASSUMED_ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/[^/]+$")
ECR_URI = re.compile(r"^\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/")
BUCKET_NAME = re.compile(r"^(?!xn--)(?!.*-s3alias$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# Retries: adaptive mode adds client-side rate limiting on throttling errors (many jobs watched at once).
# AWS_MAX_ATTEMPTS / AWS_RETRY_MODE in the environment win (tests set AWS_MAX_ATTEMPTS=1: a moto 500 fails
# fast instead of being retried).
DEFAULT_MAX_ATTEMPTS = 8
USER_AGENT = "sm-r-magic"


def image_has_registry(uri):
    """True for `host[:port]/repo[:tag]` (ECR and other registries); False for a local tag like `name:tag`."""
    if not uri or "/" not in uri:
        return False
    host = uri.split("/", 1)[0]
    return "." in host or ":" in host or host == "localhost"


def check_image(uri):
    """The configured image as SageMaker needs it: an ECR URI (SageMaker pulls jobs' and endpoints' images
    from ECR only, unless a private-registry VPC configuration is given, which sm-r-magic does not send)."""
    if not uri or not image_has_registry(uri):
        shown = f" ({uri!r} is a local tag)" if uri else ""
        raise SmRMagicError(f"no SageMaker image{shown}: {IMAGE_HINT}")
    if not ECR_URI.match(uri):
        raise SmRMagicError(f"RMagic.image {uri!r} is not in Amazon ECR, and SageMaker runs images from ECR only: "
                            f"{IMAGE_HINT}")
    return uri


def require_credentials(what):
    """For a local job that reads or writes s3:// (its runner uses this machine's AWS credentials): fail
    before the job exists, not when it starts. Only looks for credentials; does not call AWS."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise SmRMagicError(f"{what}: s3:// locations need boto3: pip install 'sm-r-magic[aws]'") from None
    try:
        found = boto3.session.Session().get_credentials()
    except BotoCoreError as exc:
        raise SmRMagicError(f"{what}: the AWS configuration does not work ({exc})") from None
    if found is None:
        raise SmRMagicError(f"{what}: {CREDENTIALS_HINT}")


def role_from_assumed_role(arn):
    """arn:aws:sts::123:assumed-role/Name/session -> arn:aws:iam::123:role/Name (path unknown: see iam)."""
    match = ASSUMED_ROLE_ARN.match(arn or "")
    if not match:
        return None
    partition, account, name = match.groups()
    return f"arn:{partition}:iam::{account}:role/{name}"


def default_bucket_name(region, account):
    return f"sagemaker-{region}-{account}"


def check_bucket_name(name):
    if not BUCKET_NAME.match(name or "") or ".." in name or re.match(r"^\d+\.\d+\.\d+\.\d+$", name):
        raise SmRMagicError(f"{name!r} is not a valid S3 bucket name: "
                            '%config RMagic.bucket = "my-bucket" (or set SM_R_MAGIC_BUCKET)')
    return name


def _client_config(service, **overrides):
    from botocore.config import Config

    from ._version import __version__

    retries = {"mode": os.environ.get("AWS_RETRY_MODE") or "adaptive"}
    if not os.environ.get("AWS_MAX_ATTEMPTS"):
        retries["max_attempts"] = DEFAULT_MAX_ATTEMPTS
    settings = dict(retries=retries, connect_timeout=10, read_timeout=70,
                    user_agent_extra=f"{USER_AGENT}/{__version__}", max_pool_connections=20)
    if service == "sagemaker-runtime":
        # An invocation is not idempotent: retry throttling and connection errors only a little.
        settings["retries"] = {"mode": "standard", **({} if os.environ.get("AWS_MAX_ATTEMPTS") else
                                                       {"max_attempts": 3})}
    settings.update(overrides)
    return Config(**settings)


def is_not_found(exc):
    """A botocore ClientError that means "no such resource"."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
    if code in ("ResourceNotFound", "ResourceNotFoundException", "NoSuchKey", "NoSuchBucket", "404", "NotFound"):
        return True
    # SageMaker answers a missing job/endpoint with ValidationException "... not found" / "Could not find".
    if code == "ValidationException":
        lowered = message.lower()
        return "not found" in lowered or "could not find" in lowered or "does not exist" in lowered
    return status == 404


def error_code(exc):
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def error_message(exc):
    return getattr(exc, "response", {}).get("Error", {}).get("Message", "") or str(exc)


class AwsSession:
    """One boto3 session and its clients (thread-safe creation), the account and the execution role."""

    def __init__(self, region=None, profile=None):
        import boto3

        self.boto = boto3.session.Session(region_name=region or None, profile_name=profile or None)
        self.region = self.boto.region_name
        if not self.region:
            raise SmRMagicError(f"no AWS region: {REGION_HINT}")
        self._clients = {}
        self._lock = threading.Lock()
        self._identity = None
        self._discovered_role = None

    @property
    def partition(self):
        return self.boto.get_partition_for_region(self.region) if hasattr(self.boto, "get_partition_for_region") \
            else "aws"

    def client(self, service):
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                client = self.boto.client(service, config=_client_config(service))
                self._clients[service] = client
            return client

    # -- identity ------------------------------------------------------------------------------------------
    def identity(self):
        if self._identity is None:
            from botocore.exceptions import ClientError, NoCredentialsError

            try:
                self._identity = self.client("sts").get_caller_identity()
            except NoCredentialsError:
                raise SmRMagicError(CREDENTIALS_HINT) from None
            except ClientError as exc:
                raise SmRMagicError(f"the AWS credentials do not work ({error_message(exc)}): "
                                    "check them with `aws sts get-caller-identity`") from None
        return self._identity

    @property
    def account(self):
        return self.identity()["Account"]

    # -- execution role ------------------------------------------------------------------------------------
    def role_arn(self, configured=None):
        """The configured role (an ARN, or a role name in this account), else the discovered one."""
        if configured:
            if configured.startswith("arn:"):
                if not ROLE_ARN.match(configured):
                    raise SmRMagicError(f"{configured!r} is not an IAM role ARN: {ROLE_HINT}")
                return configured
            if not re.match(r"^[\w+=,.@/-]{1,64}$", configured):
                raise SmRMagicError(f"{configured!r} is not an IAM role name or ARN: {ROLE_HINT}")
            return self.role_arn_of(configured.strip("/"))
        if self._discovered_role is None:
            self._discovered_role = self.discover_role()
        if not self._discovered_role:
            raise SmRMagicError(f"no SageMaker execution role found: {ROLE_HINT}")
        return self._discovered_role

    def discover_role(self):
        """As on SageMaker notebook instances and Studio, else the caller's own role; None if not found."""
        from botocore.exceptions import ClientError

        metadata = read_resource_metadata()
        if ROLE_ARN.match(metadata.get("ExecutionRoleArn") or ""):  # Studio apps write it in the file
            return metadata["ExecutionRoleArn"]
        sm = self.client("sagemaker")
        try:
            if metadata.get("DomainId"):  # Studio (user profile or shared space)
                role = None
                if metadata.get("UserProfileName"):
                    try:
                        profile = sm.describe_user_profile(DomainId=metadata["DomainId"],
                                                           UserProfileName=metadata["UserProfileName"])
                        role = (profile.get("UserSettings") or {}).get("ExecutionRole")
                    except ClientError:
                        role = None
                if not role:
                    domain = sm.describe_domain(DomainId=metadata["DomainId"])
                    if metadata.get("SpaceName"):
                        role = (domain.get("DefaultSpaceSettings") or {}).get("ExecutionRole")
                    role = role or (domain.get("DefaultUserSettings") or {}).get("ExecutionRole")
                if role:
                    return role
            elif metadata.get("ResourceName"):  # notebook instance
                instance = sm.describe_notebook_instance(NotebookInstanceName=metadata["ResourceName"])
                if instance.get("RoleArn"):
                    return instance["RoleArn"]
        except ClientError:
            pass  # fall back to the caller's identity
        arn = self.identity().get("Arn", "")
        if ROLE_ARN.match(arn):
            return arn
        role = role_from_assumed_role(arn)
        if role:
            return self.role_arn_of(role.rsplit("/", 1)[1])
        return None

    def role_arn_of(self, name):
        """The full ARN of a role in this account. A role name (and an assumed-role ARN) lacks the role's
        path, which SageMaker needs: IAM knows it; without iam:GetRole, SageMaker's own roles are known to
        live under /service-role/ (as the SageMaker SDK assumes too)."""
        from botocore.exceptions import BotoCoreError, ClientError

        if "/" in name:  # a path was given: path/name
            return f"arn:{self.partition}:iam::{self.account}:role/{name}"
        try:
            return self.client("iam").get_role(RoleName=name)["Role"]["Arn"]
        except (ClientError, BotoCoreError):
            path = "service-role/" if name.startswith("AmazonSageMaker-ExecutionRole") else ""
            return f"arn:{self.partition}:iam::{self.account}:role/{path}{name}"


def read_resource_metadata():
    path = os.environ.get(METADATA_ENV) or DEFAULT_METADATA_FILE
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def split_s3(uri):
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key
