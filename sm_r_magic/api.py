"""The plain Python API beside the magics: what the magics, the CLI and the R package call.

    job = sm_r_magic.train(code, name="mtcars-lm", channels={"train": "data/"}, hyperparameters={...})
"""


from . import config as config_module
from . import limits, options, parsing, rtools, sourcedir, spec, views
from .backends import get_backend
from .errors import JobFailed, SmRMagicError
from .jobs import SESSION
from .workflow import names


def config():
    """The settings in force (an RMagic Configurable)."""
    return config_module.current()


settings = config  # sm_r_magic.settings(): sm_r_magic.config is the submodule

SAVED_PROGRAMS = ("deploy.R", spec.INFERENCE_PROGRAM)  # what serving looks for in model.tar.gz's code/
ENDPOINT_OPERATIONS = (("CreateModel", "model"), ("CreateEndpointConfig", "endpoint_config"),
                       ("CreateEndpoint", "endpoint"))


def warm_up(settings=None):
    """Start the warm processes in the background and return at once (%load_ext calls this): R's parser for the
    syntax check and, when jobs run locally, a pre-started runner per job kind (none when RMagic.warm_processes
    is off: SM_R_MAGIC_WARM_PROCESSES=false); then SageMaker's limits are read (limits.preload), on a thread."""
    from . import warm_processes

    cfg = settings or config()
    if warm_processes.enabled(cfg):
        warm_processes.in_background(_start_warm_processes, cfg)
    else:
        limits.preload()


def _start_warm_processes(cfg):
    rtools.start_warm_parser(cfg.rscript)
    if cfg.backend == "local":
        get_backend("local", cfg).launcher.prestart()
    limits.preload()  # SageMaker's limits, which every cell's request is checked against (cached: ~1 ms)


def _check_code(code, cfg, backend):
    if code is None or not code.strip():
        raise SmRMagicError("the cell has no R code: write the R code to run below the magic line")
    _check_encodable(code)
    if backend.name == "local" or rtools.find_rscript(cfg.rscript):
        rtools.check_syntax(code, cfg.rscript)


def _check_encodable(code):
    """A lone surrogate (e.g. "\\ud800" pasted from JSON) cannot be written as UTF-8 for R."""
    try:
        code.encode("utf-8")
    except UnicodeEncodeError as exc:
        line = code.count("\n", 0, exc.start) + 1
        column = exc.start - (code.rfind("\n", 0, exc.start) + 1) + 1
        raise SmRMagicError(f"the cell has a character that is not valid Unicode ({code[exc.start]!r}, line {line}, "
                            f"column {column}): delete it and type it again") from None


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
    options.check(instance_count=instance_count, volume_size=volume_size, max_runtime=max_runtime)
    return dict(instance_type=instance_type or cfg.instance_type,
                instance_count=cfg.instance_count if instance_count is None else instance_count,
                volume_size=cfg.volume_size if volume_size is None else volume_size,
                max_runtime=cfg.max_runtime if max_runtime is None else max_runtime)


def _start(code, *, backend, name, default_name):
    """Settings, backend, base name and the cell checked; nothing is built, uploaded or created."""
    cfg = config()
    be = get_backend(backend, cfg)
    base = parsing.validate_base_name(name or default_name)
    limits.preload()  # read in the background while R checks the cell's syntax
    _check_code(code, cfg, be)
    be.check_ready()
    return cfg, be, base


def _check_distinct_outputs(outputs):
    """Two outputs published to one location would overwrite each other's files."""
    seen = {}
    for name, uri in outputs.items():
        key = uri.rstrip("/")
        if key in seen:
            raise SmRMagicError(f"--output {seen[key]} and --output {name} both go to {uri}: give each output "
                                "its own location")
        seen[key] = name


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


CREATE_OPERATION = {"training": "CreateTrainingJob", "processing": "CreateProcessingJob"}


def _checked_and_uploaded(kind, request, be, src, staged, dry_run=False):
    """Check the request against SageMaker's limits (also for --dry-run), then store the code and the local data it
    names; False for a dry run (nothing stored)."""
    limits.check(CREATE_OPERATION[kind], request, on_sagemaker=be.name == "sagemaker")
    if dry_run:
        return False
    be.upload(src, staged.values())
    return True


def _submit(kind, request, be, cfg, *, wait, progress, raise_on_failure):
    job = SESSION.add_job(be.submit(kind, request))
    return _show(job, wait=cfg.wait if wait is None else wait, progress=progress or cfg.progress,
                 raise_on_failure=raise_on_failure)


def processing(code, *, name=None, backend=None, inputs=None, outputs=None, instance_type=None,
               instance_count=None, env=None, files=(), source_dir=None, packages=(), wait=None,
               dry_run=False, progress=None, raise_on_failure=True, volume_size=None, max_runtime=None):
    """Run R code as a processing job. inputs: name -> URI; outputs: name -> URI or None (default location)."""
    resources = _resources(config(), instance_type, instance_count, volume_size, max_runtime)
    cfg, be, base = _start(code, backend=backend, name=name, default_name="r-processing")
    staged = {k: be.data_uri(v, f"--input {k}") for k, v in (inputs or {}).items()}
    inputs = {k: v.uri for k, v in staged.items()}
    if spec.CODE_INPUT in inputs:
        raise SmRMagicError("--input code is reserved for the job's code: choose another input name")
    given = {k: be.output_uri(v, f"--output {k}") for k, v in (outputs or {}).items() if v}
    _check_distinct_outputs(given)  # default locations are distinct: one folder per output name
    with sourcedir.build(spec.PROCESS_PROGRAM, code, files, source_dir) as src:
        job_name = spec.unique_name(base, src.sha256)
        outputs = {k: given.get(k) or be.processing_output_uri(job_name, k) for k in (outputs or {})}
        request = spec.processing_request(
            job_name=job_name, image=be.image(), role=be.role(), code_uri=be.code_uri(src), inputs=inputs,
            outputs=outputs, **resources, environment=_extra_environment(env, packages, cfg, source_dir),
            sourcedir_sha256=src.sha256)
        if not _checked_and_uploaded("processing", request, be, src, staged, dry_run):
            return request
    return _submit("processing", request, be, cfg, wait=wait, progress=progress, raise_on_failure=raise_on_failure)


def train(code, *, name=None, backend=None, channels=None, hyperparameters=None, instance_type=None,
          instance_count=None, env=None, files=(), source_dir=None, packages=(), wait=None, dry_run=False,
          progress=None, raise_on_failure=True, volume_size=None, max_runtime=None, spot=False,
          checkpoint_uri=None, max_wait=None, metrics=None, keep_alive=None):
    """Run R code as a training job. channels: name -> URI; hyperparameters: name -> JSON-able value.
    keep_alive: seconds a SageMaker warm pool keeps the instance (and per-job packages) for the next job."""
    cfg = config()
    resources = _resources(cfg, instance_type, instance_count, volume_size, max_runtime)
    options.check(max_wait=max_wait, keep_alive=keep_alive)
    _check_spot(spot, checkpoint_uri, max_wait, resources["max_runtime"],
                on_sagemaker=(backend or cfg.backend).lower() == "sagemaker")
    cfg, be, base = _start(code, backend=backend, name=name, default_name="r-training")
    staged = {k: be.data_uri(v, f"--channel {k}") for k, v in (channels or {}).items()}
    channels = {k: v.uri for k, v in staged.items()}
    with sourcedir.build(spec.TRAIN_PROGRAM, code, files, source_dir) as src:
        request = spec.training_request(
            job_name=spec.unique_name(base, src.sha256), image=be.image(), role=be.role(), code_uri=be.code_uri(src),
            channels=channels, hyperparameters=dict(hyperparameters or {}), output_path=be.training_output_path(),
            **resources, environment=_extra_environment(env, packages, cfg, source_dir), sourcedir_sha256=src.sha256,
            spot=spot, max_wait=max_wait, checkpoint_uri=checkpoint_uri, metric_definitions=metrics,
            keep_alive=keep_alive)
        if not _checked_and_uploaded("training", request, be, src, staged, dry_run):
            return request
    return _submit("training", request, be, cfg, wait=wait, progress=progress, raise_on_failure=raise_on_failure)


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
    latest training job. Returns (the location as CreateModel names it, the training job or None)."""
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
        return be.model_data_uri(model.model_data), model
    if isinstance(model, str):
        return be.model_data_uri(model), None
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
    raise SmRMagicError(f"no job, endpoint or pipeline execution named {name!r} (looked in {', '.join(order)})")


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


def _check_saved_code(job, model_data, environment):
    """Without deploy code, the endpoint serves code/deploy.R or code/inference.R of model.tar.gz, which
    holds the training job's code: when that code has neither, say so now, not after an endpoint failed."""
    if job is None:
        return  # a model.tar.gz given by location: the server reports what it lacks
    wanted = [p for p in (environment.get("SAGEMAKER_PROGRAM"),) + SAVED_PROGRAMS if p]
    names = job.backend.code_files(job.code_uri) if job.code_uri else None
    if sourcedir.saved_code_serves(names, None if model_data.startswith("s3://") else model_data, wanted):
        return
    raise SmRMagicError(f"--model {job.name}: its training code ({', '.join(sorted(names)) or 'none'}) has no "
                        f"{' or '.join(wanted)} to serve: write model_fn(model_dir) in a %%r_deploy cell below the "
                        "magic line (or train with --file deploy.R)")


def _deploy_sourcedir(code, files, source_dir):
    """The deploy cell (as inference.R) with --file/--source-dir files; without a cell, the files alone,
    served from inference.R or deploy.R among them. None when there is neither."""
    has_code = bool(code and code.strip())
    if not has_code and not (files or source_dir):
        return None, None
    src = sourcedir.build(spec.INFERENCE_PROGRAM, code if has_code else None, files, source_dir)
    program = next((p for p in (spec.INFERENCE_PROGRAM, "deploy.R") if p in src.files), None)
    if program is None:
        src.discard()
        raise SmRMagicError("%r_deploy without a cell serves inference.R or deploy.R from --file/--source-dir, and "
                            "neither is there: write model_fn(model_dir) in the cell, or add that file")
    return src, program


def _endpoint_requests(be, base, model_data, src, program, environment, *, instance_type, instance_count,
                       serverless, image=None):
    """CreateModel, CreateEndpointConfig and CreateEndpoint, checked against SageMaker's limits."""
    sha = src.sha256 if src else ""
    name = spec.unique_name(base, sha or model_data)
    requests = {
        "model": spec.model_request(model_name=name, image=image or be.image(), model_data=model_data, role=be.role(),
                                    code_uri=be.code_uri(src) if src else None, program=program,
                                    environment=environment, sourcedir_sha256=sha),
        "endpoint_config": spec.endpoint_config_request(config_name=name, model_name=name, instance_type=instance_type,
                                                        instance_count=instance_count, serverless=serverless,
                                                        sourcedir_sha256=sha),
        "endpoint": spec.endpoint_request(endpoint_name=name, config_name=name, sourcedir_sha256=sha),
    }
    for operation, key in ENDPOINT_OPERATIONS:
        limits.check(operation, requests[key], on_sagemaker=be.name == "sagemaker")
    return requests


def deploy(code=None, *, model=None, model_package=None, name=None, backend=None, instance_type=None,
           instance_count=None, env=None, files=(), source_dir=None, packages=(), serverless=None, workers=None,
           keep=False, wait=None, dry_run=False, progress=None, raise_on_failure=True):
    """Deploy a trained model as an endpoint; `code` defines model_fn (and optional input_fn, predict_fn,
    output_fn). Without code, the endpoint serves the code saved with the model (code/deploy.R).

    model_package="group" deploys the newest Approved version of a model package group ("group/3": that
    version) with the inference code it was registered with: image, model data and environment from its
    InferenceSpecification; a cell (or --file/--source-dir) replaces that code."""
    cfg = config()
    be = get_backend(backend, cfg)
    if model is not None and model_package is not None:
        raise SmRMagicError("give --model or --model-package, not both")
    group = names.parse_reference(model_package)[0] if model_package is not None else None
    base = parsing.validate_base_name(name or _package_endpoint_name(group) or "r-endpoint")
    serverless = parse_serverless(serverless) if not isinstance(serverless, tuple) else serverless
    options.check(instance_count=instance_count, workers=workers)
    limits.preload()
    has_code = bool(code and code.strip())
    if has_code:
        _check_encodable(code)
        if be.name == "local" or rtools.find_rscript(cfg.rscript):
            rtools.check_syntax(code, cfg.rscript)
    be.check_ready()
    environment = _extra_environment(env, packages, cfg, source_dir)
    if workers:
        environment["SM_R_MAGIC_WORKERS"] = str(workers)
    image = None
    if model_package is not None:
        container = _package_container(be, model_package)
        staged_model, job, image = be.model_data_uri(container["ModelDataUrl"]), None, container["Image"]
        environment = {**(container.get("Environment") or {}), **environment}
    else:
        staged_model, job = _resolve_model(model, be)
    model_data = staged_model.uri
    if not (has_code or files or source_dir):
        _check_saved_code(job, model_data, environment)
    src, program = _deploy_sourcedir(code, files, source_dir)
    try:
        requests = _endpoint_requests(be, base, model_data, src, program, environment, serverless=serverless,
                                      instance_type=instance_type or cfg.endpoint_instance_type,
                                      instance_count=instance_count or 1, image=image)
        if dry_run:
            return {operation: requests[key] for operation, key in ENDPOINT_OPERATIONS}
        be.upload(src, [staged_model])
    finally:
        if src:
            src.discard()
    predictor = SESSION.add_endpoint(be.deploy(requests, keep=keep))
    return _show(predictor, wait=cfg.wait if wait is None else wait, progress=progress or cfg.progress,
                 raise_on_failure=raise_on_failure)


def attach(name, backend=None):
    """Re-open a job or endpoint started earlier (this kernel, another one, or before a restart) by its name, or
    a pipeline execution by its execution id.

    Without a backend, the configured one is searched first, then the others (after a kernel restart the
    configured backend is `local` again, while the job may be on SageMaker)."""
    if backend:
        handle = get_backend(backend, config()).attach(name)
    else:
        handle = _attach_anywhere(name)
    if handle.kind == "pipeline":
        return handle
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


def executions(pipeline_name=None, backend=None):
    """The backend's pipeline executions (of one pipeline, or of all; local: every one under the local root),
    oldest first."""
    if pipeline_name is not None:
        names.check_pipeline_name(pipeline_name)
    return get_backend(backend, config()).list_pipeline_executions(pipeline_name)


# -- pipelines and the model registry ------------------------------------------------------------------------
def pipeline(name, steps, *, condition=None, register=None, inference=None, fail_message=None, cache=None,
             model_step=None, backend=None):
    """A pipeline made from the cells' job handles (steps, in any order): `.definition()` is the JSON
    CreatePipeline takes, `.run(parameters=..., backend=..., wait=...)` starts an execution.

    condition: "STEP.OUTPUT/FILE:JSON.PATH OP NUMBER" (a JSON report a processing step wrote, e.g. with
    sm_report()); register: a model package group the training step's model is registered into (when the
    condition holds), served by `inference` (an R file defining model_fn, a deploy() handle, or by default the
    code saved with the model); model_step: which training step's model, when there are several; fail_message:
    a Fail step when the condition does not hold; cache: how long an unchanged step's earlier run is reused
    ("30d", "12h", "PT1H"); backend: where run() runs it (default: where the cells ran)."""
    from .pipelines import Pipeline

    return Pipeline(name, steps, condition=condition, register=register, inference=inference,
                    fail_message=fail_message, cache=cache, model_step=model_step, backend=backend)


def model_packages(group, backend=None):
    """The versions of a model package group, newest first (DescribeModelPackage-shaped dicts: version, approval
    status, creation time, inference specification, metrics, the execution that registered it)."""
    group, version = names.parse_reference(group)
    if version is not None:
        raise SmRMagicError(f"give a model package group ({group}), not a version: every version is listed")
    return get_backend(backend, config()).list_model_packages(group)


def approve(reference, reject=False, backend=None):
    """Approve (or, with reject=True, reject) a model package version "group/N"; returns its new description."""
    group, version = names.parse_reference(reference)
    if version is None:
        raise SmRMagicError(f"{reference}: say which version, e.g. {group}/1 (%r_models {group} lists them)")
    return get_backend(backend, config()).update_model_package_approval(group, version,
                                                                       "Rejected" if reject else "Approved")


def _package_endpoint_name(group):
    """The default endpoint base name of a model package deploy: the group's name, where it fits."""
    if group and len(group) <= parsing.MAX_BASE_NAME:
        return group
    return None


def _package_container(be, reference):
    """The serving container of a model package version: the newest Approved one of a group, or the version
    given (Approved or pending; not a Rejected one). One line, and nothing created, when there is none."""
    group, version = names.parse_reference(reference)
    if version is not None:
        package = be.describe_model_package(group, version)
        if package["ModelApprovalStatus"] == "Rejected":
            raise SmRMagicError(f"--model-package {group}/{version} is Rejected: approve it first "
                                f"(%r_approve {group}/{version}) or deploy another version")
    else:
        package = be.latest_approved_model_package(group)
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
    if not containers or not containers[0].get("ModelDataUrl"):
        raise SmRMagicError(f"--model-package {reference}: version {package['ModelPackageVersion']} names no "
                            "model data in its inference specification")
    return containers[0]
