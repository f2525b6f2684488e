"""The plain Python API beside the magics: what the magics, the CLI and the R package call.

    job = sm_r_magic.train(code, name="mtcars-lm", channels={"train": "data/"}, hyperparameters={...})
"""

from . import config as config_module
from . import parsing, rtools, sourcedir, spec
from .backends import get_backend
from .errors import JobFailed, SmRMagicError
from .jobs import SESSION


def config():
    """The settings in force (an RMagic Configurable)."""
    return config_module.current()


def _check_code(code, cfg, backend):
    if code is None or not code.strip():
        raise SmRMagicError("the cell has no R code: write the R code to run below the magic line")
    if backend.name == "local" or rtools.find_rscript(cfg.rscript):
        rtools.check_syntax(code, cfg.rscript)


def _extra_environment(env, packages, cfg=None, source_dir=None):
    env = dict(env or {})
    if packages:
        env["SM_R_MAGIC_PACKAGES"] = ",".join(packages)
    # Where missing packages come from (--packages, or renv.lock/DESCRIPTION in --source-dir); --env wins.
    if cfg is not None and (packages or source_dir) and "SM_R_MAGIC_R_REPOS" not in env:
        env["SM_R_MAGIC_R_REPOS"] = cfg.r_repos
    return env


def _prepare(code, program, *, backend, name, files, source_dir, default_name):
    cfg = config()
    be = get_backend(backend, cfg)
    base = parsing.validate_base_name(name or default_name)
    _check_code(code, cfg, be)
    be.check_ready()
    src = sourcedir.build(program, code, files, source_dir)
    return cfg, be, base, src


def _finish(job, *, wait, progress, raise_on_failure):
    SESSION.add_job(job)
    if wait:
        job.wait(progress=progress)
        if raise_on_failure and job.done and job.status == "Failed":
            raise JobFailed(job)
    else:
        from .progress import show_async

        show_async(job, progress=progress)
    return job


def processing(code, *, name=None, backend=None, inputs=None, outputs=None, instance_type=None,
               instance_count=None, env=None, files=(), source_dir=None, packages=(), wait=None,
               dry_run=False, progress=None, raise_on_failure=True, volume_size=None, max_runtime=None):
    """Run R code as a processing job. inputs: name -> URI; outputs: name -> URI or None (default location)."""
    cfg, be, base, src = _prepare(code, spec.PROCESS_PROGRAM, backend=backend, name=name, files=files,
                                  source_dir=source_dir, default_name="r-processing")
    inputs = {k: be.data_uri(v, f"--input {k}") for k, v in (inputs or {}).items()}
    if spec.CODE_INPUT in inputs:
        raise SmRMagicError("--input code is reserved for the job's code: choose another input name")
    job_name = spec.unique_name(base, src.sha256)
    outputs = {k: (be.output_uri(v, f"--output {k}") if v else be.processing_output_uri(job_name, k))
               for k, v in (outputs or {}).items()}
    request = spec.processing_request(
        job_name=job_name, image=be.image(), role=be.role(), code_uri=be.code_uri(src), inputs=inputs,
        outputs=outputs, instance_type=instance_type or cfg.instance_type,
        instance_count=instance_count or cfg.instance_count, volume_size=volume_size or cfg.volume_size,
        max_runtime=max_runtime or cfg.max_runtime, environment=_extra_environment(env, packages, cfg, source_dir),
        sourcedir_sha256=src.sha256)
    if dry_run:
        return request
    be.upload(src, inputs)
    job = be.submit("processing", request)
    return _finish(job, wait=cfg.wait if wait is None else wait, progress=progress or cfg.progress,
                   raise_on_failure=raise_on_failure)


def train(code, *, name=None, backend=None, channels=None, hyperparameters=None, instance_type=None,
          instance_count=None, env=None, files=(), source_dir=None, packages=(), wait=None, dry_run=False,
          progress=None, raise_on_failure=True, volume_size=None, max_runtime=None, spot=False,
          checkpoint_uri=None, metrics=None):
    """Run R code as a training job. channels: name -> URI; hyperparameters: name -> JSON-able value."""
    cfg, be, base, src = _prepare(code, spec.TRAIN_PROGRAM, backend=backend, name=name, files=files,
                                  source_dir=source_dir, default_name="r-training")
    channels = {k: be.data_uri(v, f"--channel {k}") for k, v in (channels or {}).items()}
    request = spec.training_request(
        job_name=spec.unique_name(base, src.sha256), image=be.image(), role=be.role(), code_uri=be.code_uri(src),
        channels=channels, hyperparameters=dict(hyperparameters or {}), output_path=be.training_output_path(),
        instance_type=instance_type or cfg.instance_type, instance_count=instance_count or cfg.instance_count,
        volume_size=volume_size or cfg.volume_size, max_runtime=max_runtime or cfg.max_runtime,
        environment=_extra_environment(env, packages, cfg, source_dir), sourcedir_sha256=src.sha256, spot=spot,
        checkpoint_uri=checkpoint_uri, metric_definitions=metrics)
    if dry_run:
        return request
    be.upload(src, channels)
    job = be.submit("training", request)
    return _finish(job, wait=cfg.wait if wait is None else wait, progress=progress or cfg.progress,
                   raise_on_failure=raise_on_failure)


def attach(name, backend=None):
    """Re-open a job started earlier (this kernel, another one, or before a restart) by its name."""
    be = get_backend(backend, config())
    handle = be.attach(name)
    if hasattr(handle, "endpoint_name"):
        return SESSION.add_endpoint(handle)
    return SESSION.add_job(handle)


def jobs(backend=None):
    """This session's jobs, plus the backend's recent ones (local: every job under the local root)."""
    be = get_backend(backend, config())
    known = {job.name: job for job in be.list_jobs()}
    for job in SESSION.jobs:
        known.setdefault(job.name, job)
    return list(known.values())


def endpoints():
    return list(SESSION.endpoints)
