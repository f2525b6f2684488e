"""Where the package keeps the shared container's files, and access to its Python helper."""

import importlib.util
import os

CONTAINER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "container")
ENTRYPOINT = os.path.join(CONTAINER_DIR, "entrypoint.sh")

_s3 = None


def container_s3():
    """container/fetch.py, the S3 code path the container itself uses (one implementation for both)."""
    global _s3
    if _s3 is None:
        spec = importlib.util.spec_from_file_location("sm_r_magic_container_fetch", os.path.join(CONTAINER_DIR, "fetch.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _s3 = module
    return _s3


def container_digest(context=None):
    """sha256 of the container folder's files (names and contents; caches excluded): the image label that
    lets the docker backend tell an image built from other container files."""
    import hashlib

    context = context or CONTAINER_DIR
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(context):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", "tests"))
        for name in sorted(filenames):
            if name.endswith((".pyc", ".Rhistory", ".RData")) or name == "__init__.py":
                continue
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, context).encode() + b"\0")
            with open(path, "rb") as fh:
                digest.update(hashlib.sha256(fh.read()).digest())
    return digest.hexdigest()
