"""sm-r-magic: run R cells as SageMaker processing jobs, training jobs and endpoints.

`%load_ext sm_r_magic` registers the magics. The same power is available as plain Python functions
(`processing`, `train`, `attach`, `pipeline`, ...) for code outside IPython (the R package, the CLI, tests).
Heavy modules (boto3, ipywidgets) are imported only when a feature needs them.
"""

import sys
import types

from ._version import __version__  # noqa: F401

# `settings` (not `config`: that name is the sm_r_magic.config submodule)
_API = {"processing", "train", "deploy", "attach", "jobs", "endpoints", "settings", "executions",
        "model_packages", "approve"}


class _PipelinePackage(types.ModuleType):
    """`sm_r_magic.pipeline` names both the pipeline core's package (sm_r_magic.pipeline.definition, ...) and the
    API's `sm_r_magic.pipeline(name, steps, ...)`: calling the package makes a Pipeline (api.pipeline)."""

    def __call__(self, name, steps, **options):
        from .api import pipeline

        return pipeline(name, steps, **options)


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        # importing the subpackage sets this attribute: make that module callable as the API function
        if name == "pipeline" and type(value) is types.ModuleType:
            value.__class__ = _PipelinePackage
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name):  # lazy: keep `import sm_r_magic` and `%load_ext` fast
    if name in _API:
        from . import api

        return getattr(api, name)
    if name == "pipeline":  # not imported yet (`from . import` would ask this function again)
        import importlib

        return importlib.import_module(f"{__name__}.pipeline")
    raise AttributeError(f"module 'sm_r_magic' has no attribute {name!r}")


def load_ipython_extension(ipython):
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):
    from .magics import unload_ipython_extension as unload

    unload(ipython)
