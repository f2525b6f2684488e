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
