"""IPython glue only: option parsing with magic_arguments, errors as one-line UsageErrors.
The work happens in api.py (the same functions the CLI and the R package call)."""

import contextlib
import json
import shlex

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from . import api, parsing, views
from .config import BACKENDS, RMagic, set_current
from .errors import SmRMagicError


def _common(func):
    """Options every job magic takes (applied bottom-up, so they show after the magic's own)."""
    decorators = [
        argument("--backend", choices=BACKENDS, type=str.lower,
                 help="Where to run: local (default; this machine's R), docker (the shared image) or sagemaker."),
        argument("--name", help="Base name of the job (a timestamp suffix makes it unique); also the default "
                                "variable the handle is stored in."),
        argument("--instance-type", help="Instance type (default RMagic.instance_type)."),
        argument("--instance-count", type=int, help="Number of instances (default 1)."),
        argument("--volume-size", type=int, help="EBS volume size in GB (default RMagic.volume_size)."),
        argument("--max-run", type=int, metavar="SECONDS", help="Stop the job after this many seconds."),
        argument("--env", action="append", metavar="KEY=VALUE", help="Environment variable for the job (repeatable)."),
        argument("--file", action="append", metavar="PATH", help="Extra file put beside the code (repeatable)."),
        argument("--source-dir", metavar="DIR", help="Folder whose files are packaged with the cell's code."),
        argument("--packages", metavar="PKG1,PKG2", help="R packages installed at job start when missing."),
        argument("--as", dest="as_var", metavar="VAR", help="Store the handle in this variable."),
        argument("--async", dest="async_", action="store_true", help="Return at once; the job keeps running."),
        argument("--dry-run", action="store_true", help="Print the SageMaker API request as JSON; create nothing."),
        argument("--form", action="store_true",
                 help="Show the options as a launch form; each Launch submits the cell with the form's values."),
    ]
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


def parse_argstring(magic, line):
    """Like magic_arguments.parse_argstring, but POSIX quoting: --hp formula="mpg ~ wt" is one value."""
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot parse the options ({exc}): check the quotes") from None
    return magic.parser.parse_args(argv)


@contextlib.contextmanager
def usage_errors():
    """Bad input (SmRMagicError) reaches the user as one line: an IPython UsageError, no traceback."""
    try:
        yield
    except SmRMagicError as exc:
        raise UsageError(str(exc)) from None


def _job_kwargs(args):
    return dict(
        name=args.name, backend=args.backend, instance_type=args.instance_type, instance_count=args.instance_count,
        volume_size=args.volume_size, max_runtime=args.max_run, env=parsing.parse_env(args.env),
        files=args.file or (), source_dir=args.source_dir, packages=parsing.parse_packages(args.packages),
        wait=False if args.async_ else None, dry_run=args.dry_run,
    )


@magics_class
class RMagics(Magics):
    """%%r_processing, %%r_train, %%r_deploy and their helpers."""

    def __init__(self, shell, settings):
        super().__init__(shell)
        self.settings = settings

    def _check_count(self, args):
        parsing.check_at_least_one(args.instance_count, "--instance-count")  # before a --form is shown

    def _target_var(self, args):
        var = args.as_var or (parsing.python_identifier(args.name) if args.name else None)
        if args.as_var and not args.as_var.isidentifier():
            raise SmRMagicError(f"--as {args.as_var!r} is not a Python variable name")
        return var

    def _run(self, args, submit, kind=None, kwargs=None):
        """Validate, submit, store the handle; every SmRMagicError becomes a one-line UsageError.

        With --form, `submit(**overrides)` is handed to a launch form instead of being called once."""
        try:
            with usage_errors():
                self._check_count(args)
                var = self._target_var(args)
                if getattr(args, "form", False):
                    from .views.frontend import has_widget_frontend

                    if not has_widget_frontend():
                        raise SmRMagicError("--form shows a launch form, which needs a notebook with widgets "
                                            "(Jupyter with ipywidgets): drop --form to run the cell here")
                    return views.launch_form(kind, kwargs or {}, submit)
                result = submit()
        except UsageError:
            raise
        except Exception as exc:
            failed_job = getattr(exc, "job", None)
            if failed_job is not None and (var := self._target_var(args)):
                self.shell.user_ns[var] = failed_job  # the handle stays reachable for logs()
            raise
        if args.dry_run:
            print(json.dumps(result, indent=2, default=str))
            return None
        if var:
            self.shell.user_ns[var] = result
        return result

    @magic_arguments()
    @argument("--input", action="append", metavar="NAME=URI",
              help="Input copied to sm_input(NAME): a local path, file:// or s3:// URI (repeatable).")
    @argument("--output", action="append", metavar="NAME[=URI]",
              help="Output folder sm_output(NAME), published to URI or a default location (repeatable).")
    @_common
    @cell_magic
    def r_processing(self, line, cell):
        """Run the cell's R code as a SageMaker Processing job.

        Inside the job: sm_input("raw"), sm_output("train"), sm_hp(), plus any --file/--source-dir files.
        The handle has .status, .outputs, .logs(), .wait(), .stop().
        """
        args = parse_argstring(self.r_processing, line)
        with usage_errors():
            kwargs = dict(inputs=parsing.parse_inputs(args.input), outputs=parsing.parse_outputs(args.output),
                          **_job_kwargs(args))
        return self._run(args, lambda **over: api.processing(cell, **{**kwargs, **over}), "processing", kwargs)

    @magic_arguments()
    @argument("--channel", action="append", metavar="NAME=URI",
              help="Training channel at sm_channel(NAME): a local path, file:// or s3:// URI (repeatable).")
    @argument("--hp", action="append", metavar="KEY=VALUE",
              help="Hyperparameter; VALUE is JSON when it parses (0.5, true), else a string (repeatable).")
    @argument("--hyperparameters", metavar="JSON", help="Hyperparameters as one JSON object.")
    @argument("--metric", action="append", metavar="NAME=REGEX",
              help="Metric parsed from the logs: a regex whose group 1 is the value (repeatable).")
    @argument("--spot", action="store_true", help="Use managed spot training (sagemaker).")
    @argument("--checkpoint-uri", metavar="S3_URI",
              help="S3 URI synced with sm_checkpoint_dir(), so a restarted (spot) job resumes (sagemaker).")
    @argument("--max-wait", type=int, metavar="SECONDS",
              help="With --spot: the most seconds to wait for spot capacity plus the run (default --max-run).")
    @_common
    @cell_magic
    def r_train(self, line, cell):
        """Run the cell's R code as a SageMaker Training job.

        Inside the job: sm_channel("train"), sm_hp("alpha", 0.5), sm_model_dir(). Everything saved to
        sm_model_dir() ends up in model.tar.gz, with the code under code/ so it can be served.
        The handle has .status, .model_data, .logs(), .wait(), .stop().
        """
        args = parse_argstring(self.r_train, line)
        with usage_errors():
            kwargs = dict(channels=parsing.parse_channels(args.channel),
                          hyperparameters=parsing.parse_hyperparameters(args.hp, args.hyperparameters),
                          metrics=parsing.parse_metrics(args.metric), spot=args.spot,
                          checkpoint_uri=args.checkpoint_uri, max_wait=args.max_wait, **_job_kwargs(args))
        return self._run(args, lambda **over: api.train(cell, **{**kwargs, **over}), "training", kwargs)

    @magic_arguments()
    @argument("--backend", choices=BACKENDS, type=str.lower,
              help="Where to serve: local (default; an R process on 127.0.0.1), docker or sagemaker.")
    @argument("--model", metavar="JOB|NAME|MODEL_TAR_GZ",
              help="A training job handle ({job}), a training job name, or a model.tar.gz path/URI "
                   "(default: this session's latest training job).")
    @argument("--name", help="Base name of the endpoint (a timestamp suffix makes it unique); also the default "
                             "variable the predictor is stored in.")
    @argument("--instance-type", help="Instance type (default RMagic.endpoint_instance_type).")
    @argument("--instance-count", type=int, help="Number of instances (default 1).")
    @argument("--serverless", metavar="MEMORY_MB[,MAX_CONCURRENCY]",
              help="A serverless endpoint (sagemaker), e.g. 2048,5.")
    @argument("--workers", type=int, help="R worker processes serving requests (default: one per CPU).")
    @argument("--env", action="append", metavar="KEY=VALUE", help="Environment variable for the server (repeatable).")
    @argument("--file", action="append", metavar="PATH", help="Extra file put beside the code (repeatable).")
    @argument("--source-dir", metavar="DIR", help="Folder whose files are packaged with the cell's code.")
    @argument("--packages", metavar="PKG1,PKG2", help="R packages installed at server start when missing.")
    @argument("--keep", action="store_true", help="Keep a local endpoint running after this kernel shuts down.")
    @argument("--as", dest="as_var", metavar="VAR", help="Store the predictor in this variable.")
    @argument("--async", dest="async_", action="store_true", help="Return at once; the endpoint keeps starting.")
    @argument("--dry-run", action="store_true", help="Print the three SageMaker API requests as JSON; create nothing.")
    @argument("--form", action="store_true",
              help="Show the options as a form; each Deploy creates an endpoint with the form's values.")
    @line_cell_magic
    def r_deploy(self, line, cell=None):
        """Deploy a trained R model as an endpoint; the cell holds the inference code.

        model_fn(model_dir) is required; input_fn(body, content_type), predict_fn(data, model) and
        output_fn(prediction, accept) are optional (defaults handle text/csv and application/json).
        An empty cell, or the line magic %r_deploy, serves the code saved with the model (code/deploy.R,
        plumber files included).
        The predictor has .predict(df), .status, .logs(), .delete().
        """
        args = parse_argstring(self.r_deploy, line)
        model = args.model
        if model and model.isidentifier() and getattr(self.shell.user_ns.get(model), "kind", None) == "training":
            model = self.shell.user_ns[model]  # --model job (a variable) as well as --model {job} (its name)
        with usage_errors():
            kwargs = dict(model=model, name=args.name, backend=args.backend, instance_type=args.instance_type,
                          instance_count=args.instance_count, serverless=args.serverless, workers=args.workers,
                          env=parsing.parse_env(args.env), files=args.file or (), source_dir=args.source_dir,
                          packages=parsing.parse_packages(args.packages), keep=args.keep,
                          wait=False if args.async_ else None, dry_run=args.dry_run)
        return self._run(args, lambda **over: api.deploy(cell, **{**kwargs, **over}), "endpoint", kwargs)

    @magic_arguments()
    @argument("--backend", choices=BACKENDS, type=str.lower, help="List this backend's endpoints.")
    @argument("--delete-all", action="store_true", help="Delete every listed endpoint.")
    @line_magic
    def r_endpoints(self, line):
        """List live endpoints (this session's and those other kernels left running) with their status."""
        args = parse_argstring(self.r_endpoints, line)
        with usage_errors():
            found = api.endpoints(backend=args.backend)
        if args.delete_all:
            for predictor in found:
                predictor.delete()
                print(f"deleted {predictor.endpoint_name}")
            return None
        if not found:
            print("no live endpoints")
            return None
        for predictor in found:
            print(predictor.summary())
        return None

    @magic_arguments()
    @argument("name", help="Job name (or base name: the latest job whose name starts with it).")
    @argument("--backend", choices=BACKENDS, type=str.lower, help="Backend the job ran on.")
    @argument("--as", dest="as_var", metavar="VAR", help="Store the handle in this variable.")
    @line_magic
    def r_attach(self, line):
        """Re-attach to a job started earlier (this kernel, another one, or before a restart)."""
        args = parse_argstring(self.r_attach, line)
        with usage_errors():
            handle = api.attach(args.name, backend=args.backend)
        if args.as_var:
            self.shell.user_ns[args.as_var] = handle
        return handle

    @line_magic
    def r_image(self, line):
        """Build (and push) the shared R image, like `sm-r-magic image build`:

            %r_image build [--tag sm-r-magic:latest] [--base-image IMAGE] [--build-arg KEY=VALUE]
                           [--no-cache] [--verbose] [--push --repository NAME [--remote-tag T] [--region R]]
                           [--codebuild --repository NAME [--role R] [--bucket B]]

        With --push or --codebuild, RMagic.image is set to the pushed ECR URI for this session.
        """
        from . import image

        try:
            uri = image.run_line(line)
        except SmRMagicError as exc:
            raise UsageError(str(exc)) from None
        if uri and "/" in uri and ".dkr.ecr." in uri:
            self.settings.image = uri
            print(f"RMagic.image = {uri!r} for this session")
        return uri

    @magic_arguments()
    @argument("--backend", choices=BACKENDS, type=str.lower, help="List this backend's jobs and endpoints.")
    @argument("--limit", type=int, metavar="N", help="List the N most recent jobs (default 20).")
    @argument("--all", dest="all_jobs", action="store_true", help="List every job, not only the most recent.")
    @line_magic
    def r_jobs(self, line):
        """List this session's jobs and endpoints (and the backend's recent ones) with their status."""
        args = parse_argstring(self.r_jobs, line)
        if args.limit is not None and args.limit < 1:
            raise UsageError("--limit must be at least 1 (or use --all)")
        with usage_errors():
            found = api.jobs(backend=args.backend)
            live = api.endpoints(backend=args.backend)
        return views.show_jobs(found, live, limit=None if args.all_jobs else (args.limit or views.RECENT_JOBS))


def load_ipython_extension(ipython):
    settings = RMagic(parent=ipython)
    set_current(settings)
    ipython.configurables = [c for c in ipython.configurables if not isinstance(c, RMagic)] + [settings]
    ipython.register_magics(RMagics(ipython, settings))
    views.register_display(ipython)
    api.warm_up(settings)  # R's parser (and local job runners) start in the background


def unload_ipython_extension(ipython):
    pass
