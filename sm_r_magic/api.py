"""The plain Python API beside the magics: what the magics, the CLI and the R package call.

    job = sm_r_magic.train(code, name="mtcars-lm", channels={"train": "data/"}, hyperparameters={...})
"""

from . import config as config_module
from . import parsing, rtools, sourcedir, spec, views
from .backends import get_backend
from .errors import JobFailed, SmRMagicError
from .jobs import SESSION


def config():
    """The settings in force (an RMagic Configurable)."""
    return config_module.current()


settings = config  # sm_r_magic.settings(): sm_r_magic.config is the submodule


def warm_up(settings=None):
    """Start the warm processes in the background and return at once (%load_ext calls this): R's parser for the
    syntax check and, when jobs run locally, a pre-started runner per job kind. Nothing when
    RMagic.warm_processes is off (SM_R_MAGIC_WARM_PROCESSES=false)."""
    from . import warm_processes

    cfg = settings or config()
    if warm_processes.enabled(cfg):
        warm_processes.in_background(_start_warm_processes, cfg)


def _start_warm_processes(cfg):
    rtools.start_warm_parser(cfg.rscript)
    if cfg.backend == "local":
        get_backend("local", cfg).launcher.prestart()


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


def _resources(cfg, instance_type, instance_count, volume_size, max_runtime):
    """Instance type, count, volume (GB) and maximum runtime (s): given values, else the settings'.
    A given value must be a whole number of at least 1 (SageMaker's minimum), never silently replaced."""
    for option, value in (("--instance-count", instance_count), ("--volume-size", volume_size),
                          ("--max-run", max_runtime)):
        parsing.check_at_least_one(value, option)
    return dict(instance_type=instance_type or cfg.instance_type,
                instance_count=cfg.instance_count if instance_count is None else instance_count,
                volume_size=cfg.volume_size if volume_size is None else volume_size,
                max_runtime=cfg.max_runtime if max_runtime is None else max_runtime)


def _prepare(code, program, *, backend, name, files, source_dir, default_name):
    cfg = config()
    be = get_backend(backend, cfg)
    base = parsing.validate_base_name(name or default_name)
    _check_code(code, cfg, be)
    be.check_ready()
    src = sourcedir.build(program, code, files, source_dir)
    return cfg, be, base, src


def _show(handle, *, wait, progress, raise_on_failure):
    """Wait for the handle with a progress view (or show it and return at once); a failure raises JobFailed,
    which does not repeat the R error when the view already showed it."""
    if not wait:
        views.show_async(handle, progress=progress)
        return handle
    view = views.make_view(handle, progress)
    views.watch_with(view, handle)
    if raise_on_failure and handle.done and handle.status == "Failed":
        raise JobFailed(handle, reason_shown=bool(getattr(view, "reason_shown", False)))
    return handle


def _finish(job, *, wait, progress, raise_on_failure):
    SESSION.add_job(job)
    return _show(job, wait=wait, progress=progress, raise_on_failure=raise_on_failure)


def processing(code, *, name=None, backend=None, inputs=None, outputs=None, instance_type=None,
               instance_count=None, env=None, files=(), source_dir=None, packages=(), wait=None,
               dry_run=False, progress=None, raise_on_failure=True, volume_size=None, max_runtime=None):
    """Run R code as a processing job. inputs: name -> URI; outputs: name -> URI or None (default location)."""
    resources = _resources(config(), instance_type, instance_count, volume_size, max_runtime)
    cfg, be, base, src = _prepare(code, spec.PROCESS_PROGRAM, backend=backend, name=name, files=files,
                                  source_dir=source_dir, default_name="r-processing")
    staged = {k: be.data_uri(v, f"--input {k}") for k, v in (inputs or {}).items()}
    inputs = {k: v.uri for k, v in staged.items()}
    if spec.CODE_INPUT in inputs:
        raise SmRMagicError("--input code is reserved for the job's code: choose another input name")
    job_name = spec.unique_name(base, src.sha256)
    outputs = {k: (be.output_uri(v, f"--output {k}") if v else be.processing_output_uri(job_name, k))
               for k, v in (outputs or {}).items()}
    request = spec.processing_request(
        job_name=job_name, image=be.image(), role=be.role(), code_uri=be.code_uri(src), inputs=inputs,
        outputs=outputs, **resources, environment=_extra_environment(env, packages, cfg, source_dir),
        sourcedir_sha256=src.sha256)
    if dry_run:
        return request
    be.upload(src, staged.values())
    job = be.submit("processing", request)
    return _finish(job, wait=cfg.wait if wait is None else wait, progress=progress or cfg.progress,
                   raise_on_failure=raise_on_failure)


def train(code, *, name=None, backend=None, channels=None, hyperparameters=None, instance_type=None,
          instance_count=None, env=None, files=(), source_dir=None, packages=(), wait=None, dry_run=False,
          progress=None, raise_on_failure=True, volume_size=None, max_runtime=None, spot=False,
          checkpoint_uri=None, max_wait=None, metrics=None):
    """Run R code as a training job. channels: name -> URI; hyperparameters: name -> JSON-able value."""
    cfg = config()
    resources = _resources(cfg, instance_type, instance_count, volume_size, max_runtime)
    _check_spot(spot, checkpoint_uri, max_wait, resources["max_runtime"],
                on_sagemaker=(backend or cfg.backend).lower() == "sagemaker")
    cfg, be, base, src = _prepare(code, spec.TRAIN_PROGRAM, backend=backend, name=name, files=files,
                                  source_dir=source_dir, default_name="r-training")
    staged = {k: be.data_uri(v, f"--channel {k}") for k, v in (channels or {}).items()}
    channels = {k: v.uri for k, v in staged.items()}
    request = spec.training_request(
        job_name=spec.unique_name(base, src.sha256), image=be.image(), role=be.role(), code_uri=be.code_uri(src),
        channels=channels, hyperparameters=dict(hyperparameters or {}), output_path=be.training_output_path(),
        **resources, environment=_extra_environment(env, packages, cfg, source_dir), sourcedir_sha256=src.sha256,
        spot=spot, max_wait=max_wait, checkpoint_uri=checkpoint_uri, metric_definitions=metrics)
    if dry_run:
        return request
    be.upload(src, staged.values())
    job = be.submit("training", request)
    return _finish(job, wait=cfg.wait if wait is None else wait, progress=progress or cfg.progress,
                   raise_on_failure=raise_on_failure)


def _check_spot(spot, checkpoint_uri, max_wait, max_runtime, on_sagemaker):
    """Spot and checkpoint options, checked before anything is packaged or uploaded."""
    if checkpoint_uri and on_sagemaker and not str(checkpoint_uri).startswith("s3://"):
        raise SmRMagicError(f"--checkpoint-uri {checkpoint_uri!r}: give an s3:// URI (SageMaker syncs "
                            "sm_checkpoint_dir() with it)")
    if max_wait is not None:
        if not spot:
            raise SmRMagicError("--max-wait goes with --spot: it bounds the wait for spot capacity plus the run")
        if max_wait < max_runtime:
            raise SmRMagicError(f"--max-wait {max_wait} is shorter than the maximum runtime {max_runtime} s: "
                                "give at least that (or a smaller --max-run)")


def _resolve_model(model, be):
    """--model: a training handle, a training job name, or a model.tar.gz location; default: the session's
    latest training job."""
    from .jobs import Job

    if model is None:
        model = SESSION.last_training_job()
        if model is None:
            raise SmRMagicError("no training job in this session: pass --model JOB (a handle, a training job "
                                "name or a model.tar.gz path/URI)")
    if isinstance(model, str) and not (model.endswith(".tar.gz") or model.startswith(("s3://", "file://"))):
        known = [job for job in SESSION.jobs if job.name == model]
        if known:
            model = known[-1]
    if isinstance(model, str) and not (model.endswith(".tar.gz") or model.startswith(("s3://", "file://"))):
        model = _attach_anywhere(model, what=f"--model {model}: no training job of that name: give a handle, "
                                             "a job name or a model.tar.gz path")
    if isinstance(model, Job):
        if model.kind != "training":
            raise SmRMagicError(f"--model {model.name} is a {model.kind} job: give a training job")
        status = model.status
        if status != "Completed":
            raise SmRMagicError(f"--model {model.name} is {status}: deploy a Completed training job"
                                + (" (wait for it with .wait())" if status == "InProgress" else ""))
        return be.model_data_uri(model.model_data)
    if isinstance(model, str):
        return be.model_data_uri(model)
    raise SmRMagicError(f"--model {model!r}: give a training job handle, a training job name or a model.tar.gz")


def _attach_anywhere(name, what=None):
    """The configured backend first, then the others; the configured backend's error if none has it."""
    cfg = config()
    order = [cfg.backend] + [b for b in config_module.BACKENDS if b != cfg.backend]
    first_error = None
    for backend_name in order:
        try:
            return get_backend(backend_name, cfg).attach(name)
        except Exception as exc:  # a backend that is not set up (no Docker, no AWS) has no such job either
            first_error = first_error or exc
    if what:
        raise SmRMagicError(what)
    if isinstance(first_error, SmRMagicError):
        raise SmRMagicError(f"{first_error} (looked in {', '.join(order)}: pass --backend to name one)") from None
    raise SmRMagicError(f"no job or endpoint named {name!r} (looked in {', '.join(order)})")


def parse_serverless(text):
    """'2048' or '2048,10' -> (memory MB, max concurrency), as SageMaker accepts them."""
    if text is None or text == "":
        return None
    memory, _, concurrency = str(text).partition(",")
    try:
        memory, concurrency = int(memory), int(concurrency or 5)
    except ValueError:
        raise SmRMagicError(f"--serverless {text!r}: expected MEMORY_MB[,MAX_CONCURRENCY], e.g. 2048,5") from None
    if memory not in range(1024, 6145, 1024):
        raise SmRMagicError(f"--serverless memory {memory} MB: use 1024, 2048, 3072, 4096, 5120 or 6144")
    if not 1 <= concurrency <= 200:
        raise SmRMagicError(f"--serverless max concurrency {concurrency}: use 1 to 200")
    return memory, concurrency


def deploy(code=None, *, model=None, name=None, backend=None, instance_type=None, instance_count=None, env=None,
           files=(), source_dir=None, packages=(), serverless=None, workers=None, keep=False, wait=None,
           dry_run=False, progress=None, raise_on_failure=True):
    """Deploy a trained model as an endpoint; `code` defines model_fn (and optional input_fn, predict_fn,
    output_fn). Without code, the endpoint serves the code saved with the model (code/deploy.R)."""
    cfg = config()
    be = get_backend(backend, cfg)
    base = parsing.validate_base_name(name or "r-endpoint")
    serverless = parse_serverless(serverless) if not isinstance(serverless, tuple) else serverless
    parsing.check_at_least_one(instance_count, "--instance-count")
    if workers is not None and workers < 0:
        raise SmRMagicError("--workers must be 0 (one per CPU) or more")
    has_code = bool(code and code.strip())
    if has_code and (be.name == "local" or rtools.find_rscript(cfg.rscript)):
        rtools.check_syntax(code, cfg.rscript)
    be.check_ready()
    staged_model = _resolve_model(model, be)
    model_data = staged_model.uri
    src = sourcedir.build(spec.INFERENCE_PROGRAM, code, files, source_dir) if has_code else None
    if not has_code and (files or source_dir):
        src = sourcedir.build(spec.INFERENCE_PROGRAM, None, files, source_dir)
    environment = _extra_environment(env, packages, cfg, source_dir)
    if workers:
        environment["SM_R_MAGIC_WORKERS"] = str(workers)
    sha = src.sha256 if src else ""
    endpoint_name = spec.unique_name(base, sha or model_data)
    requests = {
        "model": spec.model_request(model_name=endpoint_name, image=be.image(), model_data=model_data, role=be.role(),
                                    code_uri=be.code_uri(src) if src else None, environment=environment,
                                    sourcedir_sha256=sha),
        "endpoint_config": spec.endpoint_config_request(
            config_name=endpoint_name, model_name=endpoint_name,
            instance_type=instance_type or cfg.endpoint_instance_type, instance_count=instance_count or 1,
            serverless=serverless, sourcedir_sha256=sha),
        "endpoint": spec.endpoint_request(endpoint_name=endpoint_name, config_name=endpoint_name, sourcedir_sha256=sha),
    }
    if dry_run:
        return {"CreateModel": requests["model"], "CreateEndpointConfig": requests["endpoint_config"],
                "CreateEndpoint": requests["endpoint"]}
    be.upload(src, [staged_model])
    predictor = SESSION.add_endpoint(be.deploy(requests, keep=keep))
    return _show(predictor, wait=cfg.wait if wait is None else wait, progress=progress or cfg.progress,
                 raise_on_failure=raise_on_failure)


def attach(name, backend=None):
    """Re-open a job or endpoint started earlier (this kernel, another one, or before a restart) by its name.

    Without a backend, the configured one is searched first, then the others (after a kernel restart the
    configured backend is `local` again, while the job may be on SageMaker)."""
    if backend:
        handle = get_backend(backend, config()).attach(name)
    else:
        handle = _attach_anywhere(name)
    if hasattr(handle, "endpoint_name"):
        return SESSION.add_endpoint(handle)
    return SESSION.add_job(handle)


def jobs(backend=None):
    """The backend's jobs: this session's, plus the backend's recent ones (local: every job under the
    local root); oldest first."""
    be = get_backend(backend, config())
    known = {job.name: job for job in be.list_jobs()}
    for job in SESSION.jobs:
        if job.backend_name == be.name:
            known.setdefault(job.name, job)
    return sorted(known.values(), key=lambda job: job.created)


def endpoints(backend=None):
    """Live endpoints: this session's, plus the backend's (local: also those other kernels started)."""
    be = get_backend(backend, config())
    known = {p.endpoint_name: p for p in SESSION.endpoints if p.backend_name == be.name}
    for predictor in be.list_endpoints():
        known.setdefault(predictor.endpoint_name, predictor)
    return [p for p in known.values() if p.status not in ("Deleted",)]
