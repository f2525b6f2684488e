# The bridge to the Python package sm_r_magic: one implementation, reached through reticulate.
# Python is started on first use (not at library(smrmagic)), with SM_R_MAGIC_PYTHON if set.

.sm <- new.env(parent = emptyenv())

#' Which Python runs the jobs
#'
#' Starts Python on first use: \code{SM_R_MAGIC_PYTHON} (a python executable with sm-r-magic installed, or
#' the folder of its virtual environment) if set, else whatever reticulate would choose
#' (\code{RETICULATE_PYTHON}, \code{reticulate::use_python()}, ...). \code{SM_R_MAGIC_PYTHON} wins over
#' \code{RETICULATE_PYTHON}.
#'
#' reticulate loads Python's shared library (\code{libpython3.X.so}), which some systems ship apart from
#' Python: on Debian and Ubuntu install it with \code{apt-get install libpython3.11} (for Python 3.11).
#'
#' @param python Optional path of a python executable (or virtual environment folder) to use; must come
#'   before the first job of the session.
#' @return A list with the python executable, its version and the sm_r_magic version (invisibly when
#'   \code{python} is given).
#' @examples
#' \dontrun{
#' sm_python()   # which Python, and its sm_r_magic version
#' }
#' @export
sm_python <- function(python = NULL) {
  if (!is.null(python)) {
    python <- .sm_string(python, "python")
    if (!is.null(.sm$api)) {
      .sm_abort("Python is already running in this R session (", .sm$python, "): restart R to change it")
    }
    Sys.setenv(SM_R_MAGIC_PYTHON = python)
  }
  .sm_api()
  info <- list(python = .sm$python, version = .sm$python_version, sm_r_magic = .sm$version)
  if (is.null(python)) info else invisible(info)
}

# SM_R_MAGIC_PYTHON as a python executable: a virtual environment's folder means its bin/python.
.sm_wanted_python <- function() {
  wanted <- Sys.getenv("SM_R_MAGIC_PYTHON", unset = "")
  if (!nzchar(wanted)) {
    return(NULL)
  }
  wanted <- path.expand(wanted)
  if (dir.exists(wanted)) {
    inside <- file.path(wanted, c("bin/python", "bin/python3", "python.exe", "Scripts/python.exe"))
    inside <- inside[file.exists(inside) & !dir.exists(inside)]
    if (!length(inside)) {
      .sm_abort("SM_R_MAGIC_PYTHON=", wanted, " is a folder without bin/python: give the python executable ",
                "of the environment where sm-r-magic is installed (e.g. .venv/bin/python)")
    }
    wanted <- inside[1]
  }
  if (!file.exists(wanted)) {
    .sm_abort("SM_R_MAGIC_PYTHON=", wanted, " does not exist: give the python of the environment where ",
              "sm-r-magic is installed (e.g. .venv/bin/python)")
  }
  wanted
}

# Point reticulate at `python` before it starts; SM_R_MAGIC_PYTHON is more specific than RETICULATE_PYTHON.
.sm_choose_python <- function(python) {
  if (reticulate::py_available(initialize = FALSE)) {
    running <- reticulate::py_config()$python
    if (normalizePath(running, mustWork = FALSE) != normalizePath(python, mustWork = FALSE)) {
      warning("Python is already running in this R session (", running, "); SM_R_MAGIC_PYTHON=", python,
              " is ignored until R restarts", call. = FALSE)
    }
    return(invisible())
  }
  Sys.setenv(RETICULATE_PYTHON = python)
  tryCatch(reticulate::use_python(python, required = TRUE), error = function(e) .sm_python_failed(e, python))
}

# reticulate could not start `python`: say why in one line, with the fix for the usual cause on Linux
# (the shared library libpython3.X, which Debian ships apart from python3).
.sm_python_failed <- function(e, python) {
  message <- paste(conditionMessage(e), collapse = " ")
  if (grepl("shared library", message, fixed = TRUE)) {
    version <- tryCatch(
      system2(python, c("-c", shQuote("import sys; print('%d.%d' % sys.version_info[:2])")), stdout = TRUE,
              stderr = FALSE)[1],
      error = function(e2) NA_character_, warning = function(w) NA_character_)
    library <- if (is.na(version)) "libpython3" else paste0("libpython", version)
    .sm_abort("reticulate cannot load Python's shared library (", library, ".so) for ", python, ": install it ",
              "(Debian/Ubuntu: sudo apt-get install ", library, "), or use a Python built with --enable-shared")
  }
  .sm_abort("reticulate cannot start ", python, ": ", strsplit(message, "\n")[[1]][1])
}

.sm_api <- function() {
  if (!is.null(.sm$api)) {
    return(.sm$api)
  }
  wanted <- .sm_wanted_python()
  if (!is.null(wanted)) {
    .sm_choose_python(wanted)
  }
  api <- tryCatch(
    .sm_import("sm_r_magic.api"),
    error = function(e) {
      python <- tryCatch(reticulate::py_config()$python, error = function(e2) NULL)
      if (is.null(python) || grepl("shared library", conditionMessage(e), fixed = TRUE)) {
        .sm_python_failed(e, python %||% Sys.getenv("RETICULATE_PYTHON", "python3"))
      }
      .sm_abort("cannot import the Python package sm_r_magic from ", python, ": install it there ",
                "(pip install sm-r-magic), or set SM_R_MAGIC_PYTHON to the python of the environment that has ",
                "it (e.g. in ~/.Renviron: SM_R_MAGIC_PYTHON=/path/to/.venv/bin/python) and restart R (",
                strsplit(conditionMessage(e), "\n")[[1]][1], ")")
    }
  )
  bridge_dir <- system.file("python", package = "smrmagic")
  .sm$bridge <- reticulate::import_from_path("smrmagic_bridge", path = bridge_dir, convert = FALSE)
  .sm$builtins <- reticulate::import_builtins(convert = FALSE)
  .sm$converting <- reticulate::py_eval("lambda x: x", convert = TRUE)  # returns x with R conversion on
  .sm$python <- reticulate::py_config()$python
  .sm$python_version <- as.character(reticulate::py_config()$version)
  .sm$version <- reticulate::py_to_r(reticulate::import("sm_r_magic", convert = FALSE)$`__version__`)
  .sm$api <- api
  api
}

.sm_bridge <- function() {
  .sm_api()
  .sm$bridge
}

# Python's stdout/stderr during a call: through R's own output, so RStudio, IRkernel and knitr show it.
.sm_text <- function(text) {
  if (inherits(text, "python.builtin.object")) reticulate::py_to_r(text) else as.character(text)
}

.sm_write_stdout <- function(text) {
  cat(.sm_text(text))
  utils::flush.console()
  invisible(NULL)
}

.sm_write_stderr <- function(text) {
  cat(.sm_text(text), file = stderr())
  invisible(NULL)
}

# Bad input or a missing setting, found on the R side: the same one-line condition as the Python API's
# SmRMagicError.
.sm_abort <- function(...) {
  stop(.sm_condition("SmRMagicError", paste0(...)))
}

# An R condition for a failed Python call; `handle` (an sm_job/sm_endpoint/sm_execution) rides along for failed
# jobs and pipeline executions.
.sm_condition <- function(kind, message, call = NULL, ...) {
  classes <- switch(kind,
    JobFailed = c("sm_job_failed", "sm_error"),
    ExecutionFailed = c("sm_execution_failed", "sm_job_failed", "sm_error"),
    SmRMagicError = c("sm_usage_error", "sm_error"),
    InvocationError = c("sm_invocation_error", "sm_error"),
    KeyboardInterrupt = c("sm_interrupted", "sm_error"),
    c("sm_python_error", "sm_error")
  )
  structure(class = c(classes, "error", "condition"),
            list(message = message, call = call, python_class = kind, ...))
}

# Call a Python function (a convert = FALSE object) through the bridge; Python errors become R errors with
# the one-line message. Returns the Python result (not converted).
.sm_call <- function(fn, ...) {
  .sm_call_list(fn, list(...))
}

# The same with the arguments as a list (no do.call on user calls: a call object passed through do.call
# would be evaluated).
.sm_call_list <- function(fn, args, call = NULL) {
  bridge <- .sm_bridge()
  outcome <- do.call(bridge$call, c(list(.sm_write_stdout, .sm_write_stderr, fn), args))
  if (isTRUE(reticulate::py_to_r(outcome$ok))) {
    return(outcome$value)
  }
  kind <- reticulate::py_to_r(outcome$kind)
  message <- reticulate::py_to_r(outcome$message)
  if (identical(kind, "JobFailed")) {
    handle <- .sm_wrap(outcome$handle)
    .sm$last <- handle
    if (inherits(handle, "sm_execution")) {
      kind <- "ExecutionFailed"
    }
    stop(.sm_condition(kind, message, call = call, handle = handle,
                       failure_reason = .sm_py_value(outcome$detail)))
  }
  if (identical(kind, "InvocationError")) {
    stop(.sm_condition(kind, message, call = call, status = .sm_py_value(outcome$status),
                       body = .sm_py_value(outcome$detail)))
  }
  stop(.sm_condition(kind, message, call = call))
}

.sm_py_value <- function(x) {
  if (is.null(x)) NULL else reticulate::py_to_r(x)
}

# R values as the Python API wants them -------------------------------------------------------------------

# A name -> value mapping (dict) from a named list or named vector; NULL or empty -> None.
.sm_dict <- function(x, what, values = c("character", "any"), allow_null_values = FALSE) {
  values <- match.arg(values)
  if (is.null(x) || length(x) == 0) {
    return(NULL)
  }
  keys <- names(x)
  if (is.null(keys) || any(!nzchar(keys)) || anyNA(keys)) {
    .sm_abort(what, " must be named, e.g. ", what, " = list(train = \"data/train.csv\")")
  }
  if (anyDuplicated(keys)) {
    .sm_abort(what, ": the name ", keys[anyDuplicated(keys)][1], " appears twice")
  }
  out <- lapply(seq_along(x), function(i) {
    value <- if (is.list(x)) x[[i]] else unname(x[i])
    if (is.null(value) || (length(value) == 1 && is.na(value))) {
      if (!allow_null_values) {
        .sm_abort(what, ": ", keys[i], " has no value")
      }
      return(NULL)
    }
    if (values == "character") {
      if (length(value) != 1) {
        .sm_abort(what, ": ", keys[i], " must be one value")
      }
      value <- as.character(value)
    }
    value
  })
  names(out) <- keys
  reticulate::dict(out, convert = FALSE)
}

# outputs: c("train", "test") (default locations), list(train = NULL), c(train = "s3://...")
.sm_outputs_arg <- function(outputs) {
  if (is.null(outputs) || length(outputs) == 0) {
    return(NULL)
  }
  if (is.character(outputs) && is.null(names(outputs))) {
    outputs <- stats::setNames(rep(list(NULL), length(outputs)), outputs)
  }
  .sm_dict(outputs, "outputs", allow_null_values = TRUE)
}

.sm_strings <- function(x, what) {
  if (is.null(x) || length(x) == 0) {
    return(reticulate::tuple())
  }
  if (!is.character(x)) {
    .sm_abort(what, " must be a character vector")
  }
  do.call(reticulate::tuple, as.list(unname(x)))
}

.sm_int <- function(x, what) {
  if (is.null(x)) {
    return(NULL)
  }
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x != round(x)) {
    .sm_abort(what, " must be a whole number")
  }
  as.integer(x)
}

.sm_flag <- function(x, what) {
  if (is.null(x)) {
    return(NULL)
  }
  if (!is.logical(x) || length(x) != 1 || is.na(x)) {
    .sm_abort(what, " must be TRUE or FALSE")
  }
  x
}

.sm_string <- function(x, what) {
  if (is.null(x)) {
    return(NULL)
  }
  if (!is.character(x) || length(x) != 1 || is.na(x)) {
    .sm_abort(what, " must be one string")
  }
  x
}

# Extra arguments (`...` of sm_processing(), sm_train(), sm_deploy()) pass through to the Python function `fn`
# when it has a keyword of that name; anything else is an R usage error naming the argument. Whole numbers
# become ints (SageMaker wants 3600, not 3600.0: max_runtime, volume_size, ...); Python's TRUE/FALSE
# arguments take only TRUE or FALSE; `metrics` is a named list or vector.
.sm_extra <- function(extra, fn, r_function) {
  if (!length(extra)) {
    return(list())
  }
  given <- names(extra)
  if (is.null(given) || any(!nzchar(given))) {
    .sm_abort(r_function, "() takes the code as its only unnamed argument: name the others, e.g. ",
              "name = \"my-job\" (see ?", r_function, ")")
  }
  accepted <- reticulate::py_to_r(.sm_call(.sm_bridge()$keyword_arguments, fn))
  # the Python names the R function fills itself (under its own names) are not extras
  extras <- setdiff(unlist(accepted$names), c("code", "raise_on_failure", names(formals(.sm_fun(r_function)))))
  for (name in given) {
    if (!is.null(accepted$names) && !name %in% extras) {
      .sm_unknown_argument(name, r_function, extras)
    }
  }
  flags <- unlist(accepted$flags)
  out <- lapply(given, function(name) {
    v <- extra[[name]]
    if (name %in% flags) {
      return(.sm_flag(v, name))
    }
    if (identical(name, "metrics")) {
      return(.sm_dict(v, "metrics"))
    }
    if (is.numeric(v) && length(v) == 1 && !is.na(v) && v == round(v) && abs(v) < .Machine$integer.max) {
      return(as.integer(v))
    }
    v
  })
  stats::setNames(out, given)
}

.sm_fun <- function(name) {
  get(name, envir = topenv(environment(.sm_extra)), mode = "function")
}

.sm_unknown_argument <- function(name, r_function, extras, known = NULL, help = r_function) {
  if (is.null(known)) {
    known <- c(setdiff(names(formals(.sm_fun(r_function))), "..."), extras)
  }
  distance <- utils::adist(name, known, ignore.case = TRUE)[1, ]
  hint <- if (min(distance) <= 2) paste0(": did you mean `", known[which.min(distance)], "`? See ?") else ": see ?"
  .sm_abort("unknown argument `", name, "` to ", r_function, "()", hint, help)
}

# A module of sm_r_magic; when it is not found, the .pth files of the environment's site-packages are read once more and
# the import tried again: with Debian's python3.11, reticulate puts a virtual environment's site-packages on
# sys.path without running its .pth files, and an editable install (pip install -e) is a .pth file.
.sm_import <- function(module) {
  tryCatch(
    reticulate::import(module, convert = FALSE),
    error = function(e) {
      if (!grepl("ModuleNotFoundError", conditionMessage(e), fixed = TRUE)) stop(e)
      reticulate::py_run_string(paste(
        "import site, sys",
        "for _folder in [p for p in sys.path if p.endswith('site-packages')]:",
        "    site.addsitedir(_folder)",
        sep = "\n"), local = TRUE)
      reticulate::import(module, convert = FALSE)
    }
  )
}
