"""Where the sagemaker backend puts code and local data in S3, and putting it there. Everything is
content-addressed, so a repeat submission writes nothing (a small file is offered once with a conditional
PutObject that S3 refuses when the object exists; a larger one is looked up first and never sent again). A
cell's files go up in parallel:

    s3://<bucket>/<prefix>/sourcedir/<sha256>/sourcedir.tar.gz      the cell's code (and --file / --source-dir files)
    s3://<bucket>/<prefix>/data/<sha256>/<basename>[/]             a local file or folder given as an input or channel
    s3://<bucket>/<prefix>/models/<sha256>/<basename>              a local model.tar.gz given to deploy
    s3://<bucket>/<prefix>/output/                                 training output path; output/<job>/<name> processing

Naming a location (data_uri, model_data_uri) only hashes local files and returns a uris.Staged value that
upload() takes back: nothing is remembered in between.
"""

import hashlib
import io
import os

from .. import aws, spec
from ..errors import SmRMagicError
from ..sourcedir import file_sha256, member_names
from ..uris import Staged, is_s3, local_path, split_s3
from .base import local_model_tarball


def folder_files(root):
    """Relative path (with /) -> absolute path of every regular file under root, sorted."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path):
                found[os.path.relpath(path, root).replace(os.sep, "/")] = path
    return dict(sorted(found.items()))


# Objects smaller than this are sent with one PutObject (the same request the transfer manager sends below its
# multipart threshold, without starting its threads: ~20 ms less per upload).
SINGLE_PUT_LIMIT = 16 << 20


class S3Staging:
    def __init__(self, backend):
        self.backend = backend
        self._hashes = {}  # (path, size, mtime, ctime, inode) -> sha256 of a local file
        self._bucket_ready = set()

    @property
    def config(self):
        return self.backend.config

    @property
    def s3(self):
        return self.backend.client("s3")

    def session_changed(self):
        self._bucket_ready = set()

    # -- names -------------------------------------------------------------------------------------------
    def bucket(self):
        if self.config.bucket:
            name = self.config.bucket
            if is_s3(name):
                name = split_s3(name)[0]
            return aws.check_bucket_name(name)
        session = self.backend.session
        return aws.check_bucket_name(aws.default_bucket_name(session.region, session.account))

    @property
    def prefix(self):
        return (self.config.prefix or "").strip("/")

    def uri(self, *parts):
        key = "/".join(p.strip("/") for p in (self.prefix, *parts) if p)
        return f"s3://{self.bucket()}/{key}"

    def code_uri(self, sourcedir):
        return self.uri("sourcedir", sourcedir.sha256, spec.SOURCEDIR_NAME)

    def code_file(self, path):
        """An existing sourcedir.tar.gz (a local cell's stored code) where code_uri() puts the same bytes."""
        return Staged(self.uri("sourcedir", self._file_sha(path), spec.SOURCEDIR_NAME), source=path)

    def _file_sha(self, path):
        st = os.stat(path)
        # ctime changes on every write and cannot be set back (unlike mtime): a rewritten file is re-hashed
        key = (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if key not in self._hashes:
            self._hashes[key] = file_sha256(path)
        return self._hashes[key]

    def content_address(self, path, area):
        """The content-addressed S3 location of a local file or folder, and what to upload there."""
        base = os.path.basename(path.rstrip(os.sep)) or "data"
        if os.path.isdir(path):
            files = folder_files(path)
            digest = hashlib.sha256()
            for rel, full in files.items():
                digest.update(rel.encode() + b"\0" + self._file_sha(full).encode() + b"\n")
            return Staged(self.uri(area, digest.hexdigest(), base) + "/", source=path, files=tuple(files.items()))
        return Staged(self.uri(area, self._file_sha(path), base), source=path)

    def data_uri(self, uri, option):
        if is_s3(uri):
            return Staged(uri)
        if "://" in uri and not uri.startswith("file://"):
            raise SmRMagicError(f"{option}: {uri} is neither a local path nor an s3:// URI")
        return self.content_address(local_path(uri, option), "data")

    def model_data_uri(self, uri):
        if is_s3(uri):
            return Staged(uri)
        return self.content_address(local_model_tarball(uri), "models")

    # -- uploads -----------------------------------------------------------------------------------------
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
            self._create_bucket(bucket)
        self._bucket_ready.add(bucket)
        return bucket

    def _create_bucket(self, bucket):
        from botocore.exceptions import ClientError

        args = {"Bucket": bucket}
        region = self.backend.session.region
        if region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.s3.create_bucket(**args)
        except ClientError as exc:
            if aws.error_code(exc) not in ("BucketAlreadyOwnedByYou",):
                raise SmRMagicError(f"could not create the S3 bucket {bucket} ({aws.error_message(exc)}): "
                                    '%config RMagic.bucket = "my-bucket"') from None

    def _exists(self, bucket, key):
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404 or aws.is_not_found(exc):
                return False
            raise

    @staticmethod
    def _transfer_config():
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=4)

    def upload(self, sourcedir, staged=()):
        """sourcedir.tar.gz (if any) and the local data of `staged`, each only if not already in S3, all at
        once -> the S3 URIs written; a failure is one line."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import ClientError, NoCredentialsError

        try:
            self.ensure_bucket()
            files = [(sourcedir.path, self.code_uri(sourcedir))] if sourcedir is not None else []
            for item in staged:
                files += self._missing_files(item)
            return [uri for uri in self._put_all(files) if uri]
        except NoCredentialsError:
            raise SmRMagicError(aws.CREDENTIALS_HINT) from None
        except (ClientError, S3UploadFailedError) as exc:
            detail = f"{aws.error_code(exc)}: {aws.error_message(exc)}" if isinstance(exc, ClientError) else str(exc)
            raise SmRMagicError(f"could not upload to s3://{self.bucket()}/{self.prefix} ({detail}): check the "
                                "bucket (RMagic.bucket) and your S3 permissions") from None

    def _missing_files(self, item):
        """(local path, S3 URI) of what `item` needs uploaded: its file, or its folder's files not yet listed
        under its prefix (an interrupted folder upload is completed)."""
        if not item.source:
            return []
        if not item.files:
            return [(item.source, item.uri)]
        bucket, key = split_s3(item.uri)
        prefix = key.rstrip("/") + "/"
        present = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            present.update(obj["Key"] for obj in page.get("Contents", []))
        return [(full, f"s3://{bucket}/{prefix}{rel}") for rel, full in item.files if prefix + rel not in present]

    def _put_all(self, files):
        """_put_if_absent for every file -> their results in order. Files below the multipart size go up
        UPLOAD_THREADS at a time (botocore clients are thread-safe), so a cell's code and data take one round
        trip, not one each; larger ones then one by one on this thread, where boto3's transfer manager stops at
        Ctrl-C (a pool would have to finish them first, or leave them running unseen)."""
        small = [i for i, (path, _) in enumerate(files) if os.path.getsize(path) < SINGLE_PUT_LIMIT]
        together = small if len(small) > 1 else []
        results = [None] * len(files)
        if together:
            from concurrent.futures import ThreadPoolExecutor

            self.s3  # noqa: B018  (one client, made before the threads need it)
            with ThreadPoolExecutor(max_workers=min(self.UPLOAD_THREADS, len(together))) as pool:
                for i, uri in zip(together, pool.map(lambda i: self._put_if_absent(*files[i]), together)):
                    results[i] = uri
        for i in sorted(set(range(len(files))) - set(together)):
            results[i] = self._put_if_absent(*files[i])
        return results

    UPLOAD_THREADS = 8
    # Up to this size a file is sent with a conditional PutObject (If-None-Match: *), which S3 refuses with 412
    # when the content-addressed key exists: one request whether or not it is there. Larger files are looked up
    # first (HeadObject) so that existing data is never sent again.
    PUT_IF_ABSENT_LIMIT = 64 << 10

    def _put_if_absent(self, path, uri):
        """Upload path to uri unless the object exists -> uri if written, else None."""
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        if os.path.getsize(path) <= self.PUT_IF_ABSENT_LIMIT:
            try:
                with open(path, "rb") as fh:
                    self.s3.put_object(Bucket=bucket, Key=key, Body=fh, IfNoneMatch="*")
                return uri
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status == 412:  # already there
                    return None
                # 409 ConditionalRequestConflict: another upload of it is under way; 501 NotImplemented: a
                # store without conditional writes. Either way: look, then send it plainly.
                if status not in (409, 501):
                    raise
        if self._exists(bucket, key):
            return None
        self._upload_file(path, bucket, key)
        return uri

    def _upload_file(self, path, bucket, key):
        """One PutObject for what fits (boto3's transfer manager starts a thread pool per upload: ~20-30 ms);
        multipart above SINGLE_PUT_LIMIT."""
        if os.path.getsize(path) < SINGLE_PUT_LIMIT:
            with open(path, "rb") as fh:
                self.s3.put_object(Bucket=bucket, Key=key, Body=fh)
        else:
            self.s3.upload_file(path, bucket, key, Config=self._transfer_config())

    CODE_FILES_MAX_BYTES = 20 << 20  # a job's code is read back to list its files only up to this size

    def code_files(self, code_uri):
        """The file names in a stored sourcedir.tar.gz (one GetObject), or None when unreadable."""
        import tarfile

        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split_s3(code_uri)
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)
            if body.get("ContentLength", 0) > self.CODE_FILES_MAX_BYTES:
                return None
            return member_names(io.BytesIO(body["Body"].read()))
        except (BotoCoreError, ClientError, OSError, tarfile.TarError):
            return None
