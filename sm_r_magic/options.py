"""Every option of the job and deploy magics, declared once: its flag, the API keyword it becomes, its help,
which magics take it, how its text is parsed and how its value is checked. The magics build their argument
parsers from this table, the API checks its keyword arguments with it (so the R package and the CLI get the same
checks), and the launch form (--form) takes its fields from it.

Pure: no IPython, no I/O. A check raises SmRMagicError with one line naming the flag.
"""

from dataclasses import dataclass

from . import parsing
from .config import BACKENDS
from .errors import SmRMagicError

PROCESSING, TRAINING, ENDPOINT = "processing", "training", "endpoint"
JOBS = (PROCESSING, TRAINING)
ALL = (PROCESSING, TRAINING, ENDPOINT)


def _at_least_one(flag):
    return lambda value: parsing.check_at_least_one(value, flag)


def _workers(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise SmRMagicError("--workers must be 0 (one per CPU) or more")


@dataclass(frozen=True)
class Option:
    flag: str                    # "--instance-count"
    kwarg: str = None            # the API keyword it becomes (None: the magic's own, e.g. --as, --form)
    help: str = ""               # the help text; {what} reads "job" or "endpoint"
    kinds: tuple = ALL           # the magics that take it
    metavar: str = None
    type: type = None
    action: str = None           # "append" (repeatable), "store_true"
    choices: tuple = None
    dest: str = None             # argparse's name when the flag's is a keyword (--as, --async)
    parse: callable = None       # the magic line's value -> the API value
    check: callable = None       # the API value -> raises SmRMagicError when bad
    form: str = None             # the launch form's field: "choice", "text", "count", "pairs", "hyperparameters"
    endpoint_help: str = None    # the help text in %%r_deploy, when it says something else there

    @property
    def name(self):
        return self.dest or self.flag[2:].replace("-", "_")

    def help_for(self, kind):
        return (self.endpoint_help if kind == ENDPOINT and self.endpoint_help else self.help)

    def argparse_kwargs(self, kind):
        kwargs = {"help": self.help_for(kind)}
        for key in ("metavar", "type", "action", "choices", "dest"):
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        return kwargs


OPTIONS = (
    # -- the job magics' own ---------------------------------------------------------------------------------
    Option("--input", "inputs", "Input copied to sm_input(NAME): a local path, file:// or s3:// URI (repeatable).",
           (PROCESSING,), metavar="NAME=URI", action="append", parse=parsing.parse_inputs, form="pairs"),
    Option("--output", "outputs", "Output folder sm_output(NAME), published to URI or a default location "
           "(repeatable).", (PROCESSING,), metavar="NAME[=URI]", action="append", parse=parsing.parse_outputs),
    Option("--channel", "channels", "Training channel at sm_channel(NAME): a local path, file:// or s3:// URI "
           "(repeatable).", (TRAINING,), metavar="NAME=URI", action="append", parse=parsing.parse_channels,
           form="pairs"),
    Option("--hp", None, "Hyperparameter; VALUE is JSON when it parses (0.5, true), else a string (repeatable).",
           (TRAINING,), metavar="KEY=VALUE", action="append"),
    Option("--hyperparameters", "hyperparameters", "Hyperparameters as one JSON object.", (TRAINING,),
           metavar="JSON", form="hyperparameters"),
    Option("--metric", "metrics", "Metric parsed from the logs: a regex whose group 1 is the value (repeatable).",
           (TRAINING,), metavar="NAME=REGEX", action="append", parse=parsing.parse_metrics),
    Option("--spot", "spot", "Use managed spot training (sagemaker).", (TRAINING,), action="store_true"),
    Option("--checkpoint-uri", "checkpoint_uri", "S3 URI synced with sm_checkpoint_dir(), so a restarted (spot) "
           "job resumes (sagemaker).", (TRAINING,), metavar="S3_URI"),
    Option("--max-wait", "max_wait", "With --spot: the most seconds to wait for spot capacity plus the run "
           "(default --max-run).", (TRAINING,), metavar="SECONDS", type=int, check=_at_least_one("--max-wait")),
    Option("--keep-alive", "keep_alive", "Keep the instance in a SageMaker warm pool this many seconds after the "
           "job, so a matching next job starts at once and finds its --packages installed (billed while kept).",
           (TRAINING,), metavar="SECONDS", type=int, check=_at_least_one("--keep-alive")),
    # -- every magic's -------------------------------------------------------------------------------------
    Option("--backend", "backend", "Where to run: local (default; this machine's R), docker (the shared image) or "
           "sagemaker.", choices=BACKENDS, type=str.lower, form="choice",
           endpoint_help="Where to serve: local (default; an R process on 127.0.0.1), docker or sagemaker."),
    Option("--model", "model", "A training job handle ({job}), a training job name, or a model.tar.gz path/URI "
           "(default: this session's latest training job).", (ENDPOINT,), metavar="JOB|NAME|MODEL_TAR_GZ",
           form="text"),
    Option("--model-package", "model_package", "Deploy a registered model version instead: the newest Approved "
           "version of GROUP, or GROUP/VERSION, served with the inference code it was registered with (a cell "
           "replaces that code).", (ENDPOINT,), metavar="GROUP[/VERSION]"),
    Option("--name", "name", "Base name of the job (a timestamp suffix makes it unique); also the default variable "
           "the handle is stored in, when that variable is free (else give --as).", form="text",
           endpoint_help="Base name of the endpoint (a timestamp suffix makes it unique); also the default "
                         "variable the predictor is stored in, when that variable is free (else give --as)."),
    Option("--instance-type", "instance_type", "Instance type (default RMagic.instance_type).", form="text",
           endpoint_help="Instance type (default RMagic.endpoint_instance_type)."),
    Option("--instance-count", "instance_count", "Number of instances (default 1).", type=int, form="count",
           check=_at_least_one("--instance-count")),
    Option("--volume-size", "volume_size", "EBS volume size in GB (default RMagic.volume_size).", JOBS, type=int,
           check=_at_least_one("--volume-size")),
    Option("--max-run", "max_runtime", "Stop the job after this many seconds.", JOBS, metavar="SECONDS", type=int,
           check=_at_least_one("--max-run")),
    Option("--serverless", "serverless", "A serverless endpoint (sagemaker), e.g. 2048,5.", (ENDPOINT,),
           metavar="MEMORY_MB[,MAX_CONCURRENCY]"),
    Option("--workers", "workers", "R worker processes serving requests (default: one per CPU).", (ENDPOINT,),
           type=int, check=_workers),
    Option("--env", "env", "Environment variable for the job (repeatable).", metavar="KEY=VALUE", action="append",
           parse=parsing.parse_env, endpoint_help="Environment variable for the server (repeatable)."),
    Option("--file", "files", "Extra file put beside the code (repeatable).", metavar="PATH", action="append",
           parse=lambda value: value or ()),
    Option("--source-dir", "source_dir", "Folder whose files are packaged with the cell's code (credential files "
           "and .smignore patterns left out).", metavar="DIR"),
    Option("--packages", "packages", "R packages installed at job start when missing.", metavar="PKG1,PKG2",
           parse=parsing.parse_packages, endpoint_help="R packages installed at server start when missing."),
    Option("--keep", "keep", "Keep a local endpoint running after this kernel shuts down.", (ENDPOINT,),
           action="store_true"),
    Option("--as", None, "Store the handle in this variable.", metavar="VAR", dest="as_var",
           endpoint_help="Store the predictor in this variable."),
    Option("--async", "wait", "Return at once; the job keeps running.", action="store_true", dest="async_",
           parse=lambda value: False if value else None,
           endpoint_help="Return at once; the endpoint keeps starting."),
    Option("--dry-run", "dry_run", "Print the SageMaker API request as JSON; create nothing.", action="store_true",
           endpoint_help="Print the three SageMaker API requests as JSON; create nothing."),
    Option("--form", None, "Show the options as a launch form; each Launch submits the cell with the form's values.",
           action="store_true",
           endpoint_help="Show the options as a form; each Deploy creates an endpoint with the form's values."),
)

BY_KWARG = {option.kwarg: option for option in OPTIONS if option.kwarg}


def for_kind(kind):
    return [option for option in OPTIONS if kind in option.kinds]


def arguments(kind):
    """Decorator: the magic_arguments `argument`s of a magic, in the table's order."""
    from IPython.core.magic_arguments import argument

    def decorate(func):
        for option in reversed(for_kind(kind)):
            func = argument(option.flag, **option.argparse_kwargs(kind))(func)
        return func

    return decorate


def api_kwargs(kind, args):
    """The API keyword arguments of a parsed magic line (SmRMagicError on a value that does not parse)."""
    kwargs = {}
    for option in for_kind(kind):
        if option.kwarg:
            value = getattr(args, option.name)
            kwargs[option.kwarg] = option.parse(value) if option.parse else value
    if kind == TRAINING:
        kwargs["hyperparameters"] = parsing.parse_hyperparameters(args.hp, args.hyperparameters)
    return kwargs


def check(**values):
    """Check the API's values of the options that have a check (None means not given)."""
    for kwarg, value in values.items():
        option = BY_KWARG.get(kwarg)
        if option is not None and option.check is not None and value is not None:
            option.check(value)


FORM_ORDER = ("backend", "name", "instance_type", "instance_count", "model", "hyperparameters", "channels", "inputs")


def form_fields(kind):
    """The options the launch form of `kind` shows, in the form's order."""
    fields = [option for option in for_kind(kind) if option.form]
    return sorted(fields, key=lambda option: FORM_ORDER.index(option.kwarg))
