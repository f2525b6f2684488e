"""IPython glue only: option parsing with magic_arguments, errors as one-line UsageErrors.
The work happens in api.py (the same functions the CLI and the R package call)."""

import builtins
import contextlib
import json
import keyword
import shlex

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from . import api, options, parsing, views
from .config import BACKENDS, RMagic, set_current
from .errors import SmRMagicError


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


@magics_class
class RMagics(Magics):
    """%%r_processing, %%r_train, %%r_deploy and their helpers."""

    def __init__(self, shell, settings):
        super().__init__(shell)
        self.settings = settings

    def _target_var(self, args):
        """The variable the handle goes to: --as VAR, else --name's, if that one is free (unset, or holding a
        handle of ours from an earlier run). Checked before anything runs, so nothing of the user's is lost."""
        if args.as_var:
            if not args.as_var.isidentifier() or keyword.iskeyword(args.as_var):
                raise SmRMagicError(f"--as {args.as_var!r} is not a Python variable name")
            return args.as_var
        if not args.name:
            return None
        var = parsing.python_identifier(args.name)
        taken = None if args.dry_run or getattr(args, "form", False) else self._taken(var)
        if taken:
            raise SmRMagicError(f"--name {args.name} would store the handle in `{var}`, which {taken}: add "
                                f"--as VAR to store it in another variable (e.g. --as {var}_job)")
        return var

    def _taken(self, var, ours=None):
        """Why `var` cannot receive a handle, or None when it can (unset, or holding one of `ours`: by default a
        job or endpoint handle)."""
        from .jobs import Job
        from .predictor import Predictor

        if keyword.iskeyword(var):
            return "is a Python keyword"
        if var in self.shell.user_ns:
            value = self.shell.user_ns[var]
            return None if isinstance(value, ours or (Job, Predictor)) else f"already holds a {type(value).__name__}"
        if hasattr(builtins, var):
            return "is a Python builtin"
        return None

    def _run(self, args, submit, kind=None, kwargs=None):
        """Validate, submit, store the handle; every SmRMagicError becomes a one-line UsageError.

        With --form, `submit(**overrides)` is handed to a launch form instead of being called once. The
        handle is the cell's result unless the cell already printed its summary (it would display as nothing)."""
        var = None
        try:
            with usage_errors():
                options.check(**(kwargs or {}))  # before a --form is shown
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
            if failed_job is not None and var:
                self.shell.user_ns[var] = failed_job  # the handle stays reachable for logs()
            raise
        if args.dry_run:
            print(json.dumps(result, indent=2, default=str))
            return None
        if var:
            self.shell.user_ns[var] = result
        return None if views.summary_printed(result) else result

    def _job(self, magic, kind, submit, line, cell):
        """A job magic: its line parsed by the option table, the cell submitted with the API's `submit`."""
        args = parse_argstring(magic, line)
        with usage_errors():
            kwargs = options.api_kwargs(kind, args)
        return self._run(args, lambda **over: submit(cell, **{**kwargs, **over}), kind, kwargs)

    @magic_arguments("%r_processing")  # usage: %%r_processing (IPython prefixes one %)
    @options.arguments(options.PROCESSING)
    @cell_magic
    def r_processing(self, line, cell):
        """Run the cell's R code as a SageMaker Processing job.

        Inside the job: sm_input("raw"), sm_output("train"), sm_hp(), plus any --file/--source-dir files.
        The handle has .status, .outputs, .logs(), .wait(), .stop().
        """
        return self._job(self.r_processing, options.PROCESSING, api.processing, line, cell)

    @magic_arguments("%r_train")
    @options.arguments(options.TRAINING)
    @cell_magic
    def r_train(self, line, cell):
        """Run the cell's R code as a SageMaker Training job.

        Inside the job: sm_channel("train"), sm_hp("alpha", 0.5), sm_model_dir(). Everything saved to
        sm_model_dir() ends up in model.tar.gz, with the code under code/ so it can be served.
        The handle has .status, .model_data, .logs(), .wait(), .stop().
        """
        return self._job(self.r_train, options.TRAINING, api.train, line, cell)

    @magic_arguments("%r_deploy")
    @options.arguments(options.ENDPOINT)
    @line_cell_magic
    def r_deploy(self, line, cell=None):
        """Deploy a trained R model as an endpoint; the cell holds the inference code.

        model_fn(model_dir) is required; input_fn(body, content_type), predict_fn(data, model) and
        output_fn(prediction, accept) are optional (defaults handle text/csv and application/json).
        An empty cell, or the line magic %r_deploy, serves the code saved with the model (code/deploy.R,
        plumber files included). %r_deploy --model-package GROUP[/VERSION] serves a registered version
        (%r_models) with the inference code it was registered with: the newest Approved one by default.
        The predictor has .predict(df), .status, .logs(), .delete().
        """
        args = parse_argstring(self.r_deploy, line)
        with usage_errors():
            kwargs = options.api_kwargs(options.ENDPOINT, args)
        model = kwargs.get("model")
        if model and model.isidentifier() and getattr(self.shell.user_ns.get(model), "kind", None) == "training":
            kwargs["model"] = self.shell.user_ns[model]  # --model job (a variable) as well as --model {job} (its name)
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
    @argument("name", help="Job name (or base name: the latest job whose name starts with it), endpoint name, or "
                           "pipeline execution id.")
    @argument("--backend", choices=BACKENDS, type=str.lower, help="Backend the job ran on.")
    @argument("--as", dest="as_var", metavar="VAR", help="Store the handle in this variable.")
    @line_magic
    def r_attach(self, line):
        """Re-attach to a job, endpoint or pipeline execution started earlier (this kernel, another one, or before
        a restart)."""
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
            found = api.jobs(backend=args.backend) + api.executions(backend=args.backend)
            live = api.endpoints(backend=args.backend)
        found.sort(key=lambda handle: handle.created)
        return views.show_jobs(found, live, limit=None if args.all_jobs else (args.limit or views.RECENT_JOBS))

    # -- pipelines and the model registry ----------------------------------------------------------------
    def _step_handles(self, text):
        """--steps prep,fit,ev: the job handles those variables hold (or this session's jobs of those names,
        as {prep} expands to)."""
        from .jobs import SESSION, Job

        handles = []
        for token in [t.strip() for t in (text or "").split(",") if t.strip()]:
            value = self.shell.user_ns.get(token) if token.isidentifier() else None
            if value is None:
                value = next((job for job in reversed(SESSION.jobs) if job.name == token), None)
            if value is None:
                raise SmRMagicError(f"--steps: {token} is not a job handle of this session: give the variables your "
                                    "%%r_processing / %%r_train cells stored their handles in (--as VAR, or --name)")
            if not isinstance(value, Job):
                raise SmRMagicError(f"--steps: {token} holds a {type(value).__name__}, not a job handle: give the "
                                    "variables your %%r_processing / %%r_train cells stored their handles in")
            handles.append(value)
        if not handles:
            raise SmRMagicError("%r_pipeline needs --steps: the handles of the cells to chain, e.g. "
                                "--steps prep,fit,ev")
        return handles

    def _inference(self, text):
        """--inference: a %%r_deploy handle (a variable), else an R file."""
        if text and text.isidentifier() and getattr(self.shell.user_ns.get(text), "kind", None) == "endpoint":
            return self.shell.user_ns[text]
        return text

    @magic_arguments()
    @argument("name", help="Pipeline name: letters, digits and hyphens (e.g. mtcars).")
    @argument("--steps", metavar="HANDLE,HANDLE,...", help="The handles of the cells to chain (the variables "
              "their --as or --name stored them in), in any order: an input that is another step's output "
              "becomes a reference to it, every other input a parameter.")
    @argument("--condition", metavar="TEXT", help="Run the registration only when this holds: "
              "'STEP.OUTPUT/FILE:JSON.PATH OP NUMBER', e.g. 'evaluate.evaluation/evaluation.json:"
              "regression_metrics.rmse.value <= 3.5' (OP: <=, <, >=, >, ==, !=; the file written with sm_report()).")
    @argument("--register", metavar="GROUP", help="Register the training step's model into this model package "
              "group (when the condition holds).")
    @argument("--model-step", metavar="STEP", help="With --register and several training steps: whose model.")
    @argument("--inference", metavar="HANDLE|FILE", help="The inference code registered versions are served "
              "with: a %%%%r_deploy handle (its code), an R file defining model_fn, or by default the code saved "
              "with the model.")
    @argument("--fail-message", metavar="TEXT", help="With --condition: fail the execution with this message "
              "when the condition does not hold.")
    @argument("--cache", metavar="DURATION", help="Reuse a step's earlier run with the same arguments for this "
              "long (30d, 12h, 90m, or ISO 8601 like PT1H).")
    @argument("--backend", choices=BACKENDS, type=str.lower, help="Where .run() runs it (default: where the "
              "cells ran; sagemaker moves local cells' code and data to S3).")
    @argument("--run", action="store_true", help="Start an execution at once (and wait for it, unless --async).")
    @argument("--param", action="append", metavar="NAME=VALUE", help="With --run: a parameter's value for this "
              "execution (repeatable).")
    @argument("--async", dest="async_", action="store_true", help="With --run: return at once; the execution "
              "keeps running.")
    @argument("--dry-run", action="store_true", help="Print the pipeline definition JSON; create nothing.")
    @argument("--as", dest="as_var", metavar="VAR", help="Store the Pipeline in this variable (default: the "
              "pipeline's name, when that variable is free).")
    @line_magic
    def r_pipeline(self, line):
        """Make a SageMaker Pipeline from the cells you ran: each handle becomes a step with the request its cell
        sent, chained by what they read and write.

        The Pipeline has .run(parameters={...}, backend=...), .definition() (the JSON CreatePipeline takes),
        .parameters and .executions(). An execution has .status, .steps(), .step_job(STEP), .logs(), .wait(),
        .stop(); %r_attach EXECUTION_ID finds it again. Registered versions: %r_models GROUP, %r_approve
        GROUP/VERSION, %%r_deploy --model-package GROUP.
        """
        args = parse_argstring(self.r_pipeline, line)
        with usage_errors():
            var = self._pipeline_var(args)
            parameters = parsing.parse_pairs(args.param, "--param", "VALUE", what="parameter")
            if (parameters or args.async_) and not args.run:
                raise SmRMagicError("--param and --async go with --run (or call .run(parameters={...}) later)")
            pipe = api.pipeline(args.name, self._step_handles(args.steps), condition=args.condition,
                                register=args.register, inference=self._inference(args.inference),
                                fail_message=args.fail_message, cache=args.cache, model_step=args.model_step,
                                backend=args.backend)
            if args.dry_run:
                print(json.dumps(pipe.definition(), indent=2, default=str))
                return None
            if args.run:
                pipe.check_parameters(parameters)
            if var:
                self.shell.user_ns[var] = pipe
            if not args.run:
                return pipe
            execution = pipe.run(parameters=parameters or None, wait=False if args.async_ else None)
        return None if views.summary_printed(execution) else execution

    def _pipeline_var(self, args):
        from .pipelines import Pipeline

        if args.as_var:
            if not args.as_var.isidentifier() or keyword.iskeyword(args.as_var):
                raise SmRMagicError(f"--as {args.as_var!r} is not a Python variable name")
            return args.as_var
        var = parsing.python_identifier(args.name)
        taken = None if args.dry_run else self._taken(var, ours=(Pipeline,))
        if taken:
            raise SmRMagicError(f"the pipeline {args.name} would be stored in `{var}`, which {taken}: add --as VAR "
                                f"to store it in another variable (e.g. --as {var}_pipeline)")
        return var

    @magic_arguments()
    @argument("group", help="Model package group (what --register named).")
    @argument("--backend", choices=BACKENDS, type=str.lower, help="The backend whose registry to read (local and "
              "docker share one).")
    @line_magic
    def r_models(self, line):
        """List a model package group's versions, newest first: approval status, when, metrics, and which pipeline
        execution registered each."""
        from .views.models import print_model_packages

        args = parse_argstring(self.r_models, line)
        with usage_errors():
            packages = api.model_packages(args.group, backend=args.backend)
        print_model_packages(args.group, packages)

    @magic_arguments()
    @argument("version", metavar="GROUP/VERSION", help="The model package version, e.g. mtcars-models/2.")
    @argument("--reject", action="store_true", help="Reject it instead.")
    @argument("--backend", choices=BACKENDS, type=str.lower, help="The backend whose registry holds it.")
    @line_magic
    def r_approve(self, line):
        """Approve a registered model version (what %%r_deploy --model-package GROUP deploys: the newest Approved
        one), or reject it with --reject."""
        args = parse_argstring(self.r_approve, line)
        with usage_errors():
            package = api.approve(args.version, reject=args.reject, backend=args.backend)
        print(f"{package['ModelPackageGroupName']}/{package['ModelPackageVersion']}: "
              f"{package['ModelApprovalStatus']}")


def load_ipython_extension(ipython):
    settings = RMagic(parent=ipython)
    set_current(settings)
    ipython.configurables = [c for c in ipython.configurables if not isinstance(c, RMagic)] + [settings]
    ipython.register_magics(RMagics(ipython, settings))
    views.register_display(ipython)
    api.warm_up(settings)  # R's parser (and local job runners) start in the background


def unload_ipython_extension(ipython):
    pass
