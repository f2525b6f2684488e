"""Download an s3:// object or prefix into a folder (the container's S3 code path).

Used by the R entrypoint for `sagemaker_submit_directory` and SAGEMAKER_SUBMIT_DIRECTORY when they
are s3:// URIs. boto3 honours AWS_ENDPOINT_URL, so the same code path runs against moto in tests.
"""
import os
import sys


def fetch(uri, dest):
    import boto3

    bucket, _, key = uri[len("s3://"):].partition("/")
    s3 = boto3.client("s3")
    os.makedirs(dest, exist_ok=True)
    paginator = s3.get_paginator("list_objects_v2")
    fetched = []
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        for obj in page.get("Contents", []):
            name = obj["Key"]
            if name == key:
                rel = os.path.basename(key)
            elif name.startswith(key.rstrip("/") + "/"):
                rel = name[len(key.rstrip("/")) + 1:]
            else:
                continue  # "data.csv" must not match "data.csv.bak"
            if not rel or rel.endswith("/"):
                continue
            target = os.path.join(dest, rel)
            if os.path.commonpath([os.path.abspath(target), os.path.abspath(dest)]) != os.path.abspath(dest):
                raise SystemExit(f"refusing to write outside {dest}: {name}")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            s3.download_file(bucket, name, target)
            fetched.append(target)
    if not fetched:
        raise SystemExit(f"no S3 object at {uri}")
    print("\n".join(fetched))


if __name__ == "__main__":
    fetch(sys.argv[1], sys.argv[2])
