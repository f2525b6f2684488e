"""Backends run the same SageMaker request dicts: local (this machine's R), docker (the shared image),
sagemaker (the real service). They never import IPython or ipywidgets."""

import weakref

from ..errors import SmRMagicError

_cache = weakref.WeakKeyDictionary()  # settings object -> {backend name: backend}


def get_backend(name, config):
    """The backend instance for `name` with these settings (cached per settings object)."""
    name = (name or config.backend).lower()
    backends = _cache.setdefault(config, {})
    if name not in backends:
        if name == "local":
            from .local import LocalBackend as cls
        elif name == "docker":
            try:
                from .docker import DockerBackend as cls
            except ImportError:
                raise SmRMagicError("the docker backend is not available in this version: use --backend local") from None
        elif name == "sagemaker":
            try:
                from .sagemaker import SageMakerBackend as cls
            except ImportError as exc:
                if "boto3" in str(exc) or "botocore" in str(exc):
                    raise SmRMagicError("the sagemaker backend needs boto3: pip install 'sm-r-magic[aws]'") from None
                raise
        else:
            raise SmRMagicError(f"unknown backend {name!r}: use local, docker or sagemaker")
        backends[name] = cls(config)
    return backends[name]
