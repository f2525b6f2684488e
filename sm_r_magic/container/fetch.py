"""Move files between S3 and local folders: the container's S3 code path.

The R entrypoint runs `python3 fetch.py s3://... DEST` for `sagemaker_submit_directory` and
SAGEMAKER_SUBMIT_DIRECTORY when they are s3:// URIs; the local and docker backends use the same functions
for s3:// inputs and outputs. boto3 honours AWS_ENDPOINT_URL, so tests run this against moto.
"""
import os
import sys


def _split(uri):
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def fetch(uri, dest, quiet=False):
    """Download an object (kept under its own name) or every object under a prefix into dest."""
    import boto3

    bucket, key = _split(uri)
    s3 = boto3.client("s3")
    dest = os.path.abspath(dest)
    os.makedirs(dest, exist_ok=True)
    prefix = key.rstrip("/")
    fetched = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"]
            if name == key:
                rel = os.path.basename(key)
            elif name.startswith(prefix + "/") or not prefix:
                rel = name[len(prefix) + 1:] if prefix else name
            else:
                continue  # "data.csv" must not match "data.csv.bak"
            if not rel or rel.endswith("/"):
                continue
            target = os.path.abspath(os.path.join(dest, rel))
            if os.path.commonpath([target, dest]) != dest:
                raise SystemExit(f"refusing to write outside {dest}: {name}")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            s3.download_file(bucket, name, target)
            fetched.append(target)
    if not fetched:
        raise SystemExit(f"no S3 object at {uri}")
    if not quiet:
        print("\n".join(fetched))
    return fetched


def upload_file(path, uri):
    import boto3

    bucket, key = _split(uri)
    boto3.client("s3").upload_file(path, bucket, key)


def upload_dir(src, uri):
    bucket, key = _split(uri)
    prefix = key.rstrip("/")
    for dirpath, _, filenames in os.walk(src):
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, src).replace(os.sep, "/")
            upload_file(path, f"s3://{bucket}/{prefix}/{rel}" if prefix else f"s3://{bucket}/{rel}")


if __name__ == "__main__":
    fetch(sys.argv[1], sys.argv[2])
