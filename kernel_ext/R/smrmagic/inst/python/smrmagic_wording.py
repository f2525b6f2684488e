"""Messages of sm_r_magic in R's words. The Python API's messages are written for the IPython magics
(`--model JOB`, `%%r_deploy`, `%config RMagic.bucket = ...`, `predictor.wait()`); R users call functions
with arguments, so `--model JOB` reads `model = JOB`, `%%r_deploy --model m` reads `sm_deploy(model = "m")`,
`%config RMagic.bucket = "b"` reads `sm_config(bucket = "b")`. Text between backticks (shell commands such
as `sm-r-magic image build --push`) is left alone."""

import ast
import re

# magic option -> (R argument, how it takes values): "value" (one value), "flag" (TRUE/FALSE),
# "list" (a vector: files, packages), "named" (a named list: --input raw -> inputs$raw), "handles" (R variables
# holding handles: --steps prep,fit -> steps = list(prep, fit)).
OPTIONS = {
    "name": ("name", "value"), "backend": ("backend", "value"), "model": ("model", "value"),
    "instance-type": ("instance_type", "value"), "instance-count": ("instance_count", "value"),
    "volume-size": ("volume_size", "value"), "max-run": ("max_runtime", "value"),
    "max-wait": ("max_wait", "value"), "checkpoint-uri": ("checkpoint_uri", "value"),
    "serverless": ("serverless", "value"), "workers": ("workers", "value"),
    "source-dir": ("source_dir", "value"), "hyperparameters": ("hyperparameters", "value"),
    "file": ("files", "list"), "packages": ("packages", "list"),
    "input": ("inputs", "named"), "output": ("outputs", "named"), "channel": ("channels", "named"),
    "metric": ("metrics", "named"), "hp": ("hyperparameters", "named"), "env": ("env", "named"),
    "spot": ("spot", "flag"), "keep": ("keep", "flag"), "dry-run": ("dry_run", "flag"),
    "steps": ("steps", "handles"), "condition": ("condition", "value"), "register": ("register", "value"),
    "model-step": ("model_step", "value"), "inference": ("inference", "value"),
    "fail-message": ("fail_message", "value"), "cache": ("cache", "value"),
    "model-package": ("model_package", "value"), "param": ("parameters", "named"), "reject": ("reject", "flag"),
}
QUOTES = ("'", '"')
FLAG_VALUES = {"async": ("wait", "FALSE")}  # options whose R form is another argument's value
MAGICS = {"r_processing": "sm_processing", "r_train": "sm_train", "r_deploy": "sm_deploy", "r_jobs": "sm_jobs",
          "r_endpoints": "sm_endpoints", "r_attach": "sm_attach", "r_pipeline": "sm_pipeline", "r_models": "sm_models",
          "r_approve": "sm_approve"}

# A value right after an option: a Python repr, a number, an UPPERCASE placeholder, or (for these options) a
# bare name such as a job name.
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_NUMBER = r"-?\d+(?:\.\d+)?(?![\w.-])"
_PAIR = rf"[A-Za-z0-9._-]+=(?:{_QUOTED})"  # --metric rmse='rmse: ([0-9.]+)'
_BARE = r"[A-Za-z0-9/~.][A-Za-z0-9._/:=,+~-]*?(?=[:;,)]?(?:\s|$)|[:;,)]$)"
_BARE_VALUED = {"name", "model", "backend", "input", "output", "channel", "metric", "hp", "env", "packages", "file",
                "steps", "register", "model-step", "inference", "model-package", "cache"}
# magics whose first positional argument is a string argument of their R function: %r_approve g/2 ->
# sm_approve("g/2")
_POSITIONAL_STRING = {"sm_attach", "sm_models", "sm_approve"}
# words that follow an option without being its value: "--max-wait goes with --spot", "--name is ..."
_WORDS = {"is", "was", "are", "must", "goes", "to", "and", "or", "of", "the", "a", "an", "with", "needs", "in",
          "names", "memory", "max", "for", "as", "given"}
_PLACEHOLDER = r"[A-Z][A-Z_\[\],]*"  # JOB, MEMORY_MB[,MAX_CONCURRENCY]
_OPTION = re.compile(r"(?<![\w`-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?![\w-])")
_VALUE = re.compile(rf"\s+({_PAIR}|{_QUOTED}|{_NUMBER}|{_BARE})")


def r_string(text):
    """An R string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _python_value(token):
    """A value token as R code: 'x' -> "x", True -> TRUE, 3 -> 3, PLACEHOLDER -> PLACEHOLDER."""
    if token[0] in QUOTES:
        try:
            value = ast.literal_eval(token)
        except (ValueError, SyntaxError):
            value = token[1:-1]
        return r_string(str(value))
    if token in ("True", "False", "None"):
        return {"True": "TRUE", "False": "FALSE", "None": "NULL"}[token]
    if re.fullmatch(_NUMBER, token) or re.fullmatch(_PLACEHOLDER, token):
        return token
    return r_string(token)


def _list_value(token, kind):
    """packages glmnet,data.table -> c("glmnet", "data.table")."""
    if kind == "list" and token[0] not in QUOTES and "," in token:
        return "c(" + ", ".join(r_string(part) for part in token.split(",") if part) + ")"
    return _python_value(token)


def _handles_value(token):
    """prep,fit,ev -> list(prep, fit, ev): the R variables that hold the handles."""
    if token[0] in QUOTES:
        return _python_value(token)
    return "list(" + ", ".join(part for part in token.split(",") if part) + ")"


def _option_value(option, text, position):
    """The value following an option at `position`: (its match, its text), or (None, None)."""
    match = _VALUE.match(text, position)
    if not match:
        return None, None
    token = match.group(1)
    if token in _WORDS or token.startswith("--"):
        return None, None
    bare = not (token[0] in QUOTES or re.fullmatch(_NUMBER, token) or token in ("True", "False", "None"))
    if bare and option not in _BARE_VALUED and not re.fullmatch(_PLACEHOLDER, token):
        return None, None
    if option == "backend" and bare and token not in ("local", "docker", "sagemaker"):
        return None, None
    return match, token


def _argument(option, text, position):
    """One magic option (and its value) in R's words; returns (R text, end position)."""
    if option in FLAG_VALUES:
        argument, value = FLAG_VALUES[option]
        return f"{argument} = {value}", position
    if option not in OPTIONS:
        return f"`{option.replace('-', '_')}`", position
    argument, kind = OPTIONS[option]
    if kind == "flag":
        return f"{argument} = TRUE", position
    match, token = _option_value(option, text, position)
    if match is None:
        return f"`{argument}`", position
    if kind == "named":
        name, sep, value = token.partition("=")
        if sep and value[:1] in QUOTES:
            return f"{argument} = list({name} = {_python_value(value)})", match.end()
        if token[0] in QUOTES:
            return f"{argument} = {_python_value(token)}", match.end()
        return f"{argument}${name}", match.end()
    if kind == "handles":
        return f"{argument} = {_handles_value(token)}", match.end()
    return f"{argument} = {_list_value(token, kind)}", match.end()


def _options(text):
    out, position = [], 0
    for found in _OPTION.finditer(text):
        if found.start() < position:
            continue
        out.append(text[position:found.start()])
        rendered, position = _argument(found.group(1), text, found.end())
        out.append(rendered)
    out.append(text[position:])
    return "".join(out)


_MAGIC = re.compile(r"%%?(r_[a-z]+)((?:\s+--[a-z][a-z-]*(?:\s+(?!--)[^\s()]+)?)*)(?:\s+(?!--|or\b|\()([^\s()]+))?")
_MAGIC_ARGUMENT = re.compile(r"\s+--([a-z][a-z-]*)")


def _magic_call(match):
    """`%%r_deploy --model m` -> `sm_deploy(model = "m")`, `%r_attach x` -> `sm_attach("x")`."""
    function = MAGICS.get(match.group(1))
    if function is None:
        return match.group(0)
    options, positional = match.group(2) or "", match.group(3)
    arguments, position = [], 0
    while True:
        found = _MAGIC_ARGUMENT.match(options, position)
        if not found:
            break
        rendered, position = _argument(found.group(1), options, found.end())
        arguments.append(rendered.strip("`"))
    tail = options[position:]
    if positional and function in _POSITIONAL_STRING and not tail:
        name = positional.rstrip(",.;")
        arguments.insert(0, r_string(name))
        tail = positional[len(name):]
    elif positional:
        tail += " " + positional
    return f"{function}({', '.join(arguments)})" + tail


def _config_value(match):
    """`%config RMagic.bucket = "b"` -> `sm_config(bucket = "b")`."""
    value = match.group(2)
    return f"sm_config({match.group(1)} = {_python_value(value) if value[0] in QUOTES else value})"


_PYTHON_VALUE = r"'(?:[^'\\]|\\.)*'|\"[^\"]*\"|True|False|None|-?\d+(?:\.\d+)?"
# In this order: whole phrases first, then the magics' calls, then the handles' methods, then options.
_REPLACEMENTS = [
    (re.compile(r"the cell has no R code: write the R code to run below the magic line"),
     "code is empty: give the R code to run (a string, a function whose body is the code, or an .R file)"),
    (re.compile(r"%r_attach (\S+) \(or sm_r_magic\.attach\([^)]*\)\)"),
     lambda m: f"sm_attach({r_string(m.group(1))})"),
    # pipelines: Python's list and dict literals, and the magics' cells, as an R user writes them
    (re.compile(r"steps=\[([^\]]*)\] \(--steps [^)]*\)"), r"steps = list(\1)"),
    (re.compile(r" \(model_step= in Python\)"), ""),
    (re.compile(r"the handles your %%r_processing / %%r_train cells stored \(--as VAR, or the variable of --name\)"),
     "the handles sm_processing() / sm_train() returned"),
    (re.compile(r"\(--as NAME on %%r_processing / %%r_train\)"), "(the handles sm_processing() / sm_train() return)"),
    (re.compile(r"\(the cell's --name\)"), "(the `name` of its job)"),
    (re.compile(r"%%r_(train|processing) cell\b"), r"sm_\1() job"),
    (re.compile(r"\ba %%r_deploy handle\b"), "an sm_deploy() handle"),
    (re.compile(r"in a %%r_deploy cell below the magic line"), "in the code of sm_deploy()"),
    (re.compile(r"\bcells\b"), "jobs"),
    (re.compile(r"parameters=\{'([^']*)': \.\.\.\}"), r"parameters = list(\1 = ...)"),
    (re.compile(r"\.run\(parameters=\{\.\.\.\}\)"), "$run(parameters = list(...))"),
    (re.compile(r"(?<![\w)])\.definition\(\)"), "$definition()"),
    (re.compile(r"\bbackend='(\w+)'"), r'backend = "\1"'),
    (re.compile(r"%config RMagic\.(\w+) = (\"[^\"]*\"|'[^']*'|\S+)"), _config_value),
    (re.compile(r"%config RMagic\.(\w+)"), lambda m: f"sm_config({m.group(1)} = ...)"),
    (re.compile(rf"(?<![\w.])RMagic\.(\w+) = ({_PYTHON_VALUE})"),
     lambda m: f"sm_config()${m.group(1)} = {_python_value(m.group(2))}"),
    (re.compile(r"(?<![\w.])RMagic\.(\w+)"), lambda m: f"sm_config()${m.group(1)}"),
    (_MAGIC, _magic_call),
    (re.compile(r"sm_r_magic\.attach\(('(?:[^'\\]|\\.)*'|\"[^\"]*\")\)"),
     lambda m: f"sm_attach({_python_value(m.group(1))})"),
    (re.compile(r"\bpredictor\.wait\(\)"), "sm_wait(endpoint)"),
    (re.compile(r"\bpredictor\.failure_reason\b"), "sm_failure_reason(endpoint)"),
    (re.compile(r"\bpredictor\.logs\(\)"), "sm_logs(endpoint)"),
    (re.compile(r"\bpredictor\.delete\(\)"), "sm_delete(endpoint)"),
    (re.compile(r"\(a new endpoint and predictor\)"), "(a new endpoint and handle)"),
    (re.compile(r"(?<![\w)])\.(wait|stop|logs)\(\)"), lambda m: f"sm_{m.group(1)}()"),
    (re.compile(r"\bthe cell\b"), "the code"),
]


def _translate(segment):
    for pattern, replacement in _REPLACEMENTS:
        segment = pattern.sub(replacement, segment)
    return _options(segment)


# Messages that quote the user's R code: they stay as R printed them.
_VERBATIM = ("R code does not parse:",)


def r_words(message):
    """`message` of sm_r_magic with the magics' wording replaced by the R package's (see the module doc)."""
    if not message or message.startswith(_VERBATIM):
        return message
    parts = message.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: translate everything
        return _translate(message)
    return "`".join(_translate(part) if i % 2 == 0 else part for i, part in enumerate(parts))
