"""sm-r-magic: run R cells as SageMaker processing jobs, training jobs and endpoints.

`%load_ext sm_r_magic` registers the magics. The same power is available as plain Python functions
(`processing`, `train`, `attach`, `pipeline`, ...) for code outside IPython (the R package, the CLI, tests).
Heavy modules (boto3, ipywidgets) are imported only when a feature needs them.
"""

from ._version import __version__  # noqa: F401

# `settings` (not `config`: that name is the sm_r_magic.config submodule); the pipeline machinery is the
# sm_r_magic.workflow package, so `sm_r_magic.pipeline(...)` is simply the API's function.
_API = {"processing", "train", "deploy", "attach", "jobs", "endpoints", "settings", "executions", "pipeline",
        "model_packages", "approve"}


def __getattr__(name):  # lazy: keep `import sm_r_magic` and `%load_ext` fast
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'sm_r_magic' has no attribute {name!r}")


def load_ipython_extension(ipython):
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):
    from .magics import unload_ipython_extension as unload

    unload(ipython)
