# The bridge to the Python package sm_r_magic: one implementation, reached through reticulate.
# Python is started on first use (not at library(smrmagic)), with SM_R_MAGIC_PYTHON if set.

.sm <- new.env(parent = emptyenv())

#' Which Python runs the jobs
#'
#' Starts Python on first use: \code{SM_R_MAGIC_PYTHON} (a python executable with sm-r-magic installed) if
#' set, else whatever reticulate would choose (\code{reticulate::use_python()}, \code{RETICULATE_PYTHON}, ...).
#'
#' @param python Optional path of a python executable to use; must come before the first job of the session.
#' @return A list with the python executable, its version and the sm_r_magic version (invisibly).
#' @export
sm_python <- function(python = NULL) {
  if (!is.null(python)) {
    if (!is.null(.sm$api)) {
      stop("Python is already running in this R session (", .sm$python, "): restart R to change it",
           call. = FALSE)
    }
    Sys.setenv(SM_R_MAGIC_PYTHON = python)
  }
  .sm_api()
  info <- list(python = .sm$python, version = .sm$python_version, sm_r_magic = .sm$version)
  invisible(info)
}

.sm_api <- function() {
  if (!is.null(.sm$api)) {
    return(.sm$api)
  }
  wanted <- Sys.getenv("SM_R_MAGIC_PYTHON", unset = "")
  if (nzchar(wanted)) {
    if (!file.exists(wanted)) {
      stop("SM_R_MAGIC_PYTHON=", wanted, " does not exist: give the python of the environment where ",
           "sm-r-magic is installed (e.g. .venv/bin/python)", call. = FALSE)
    }
    if (reticulate::py_available(initialize = FALSE)) {
      running <- reticulate::py_config()$python
      if (normalizePath(running, mustWork = FALSE) != normalizePath(wanted, mustWork = FALSE)) {
        warning("Python is already running in this R session (", running, "); SM_R_MAGIC_PYTHON=", wanted,
                " is ignored until R restarts", call. = FALSE)
      }
    } else {
      reticulate::use_python(wanted, required = TRUE)
    }
  }
  api <- tryCatch(
    reticulate::import("sm_r_magic.api", convert = FALSE),
    error = function(e) {
      python <- tryCatch(reticulate::py_config()$python, error = function(e2) "no python found")
      stop("cannot import the Python package sm_r_magic from ", python, ": install it there ",
           "(pip install sm-r-magic) or set SM_R_MAGIC_PYTHON to a python that has it, before the first ",
           "sm_* call of the session (", strsplit(conditionMessage(e), "\n")[[1]][1], ")", call. = FALSE)
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

# An R condition for a failed Python call; `handle` (an sm_job/sm_endpoint) rides along for failed jobs.
.sm_condition <- function(kind, message, call = NULL, ...) {
  classes <- switch(kind,
    JobFailed = c("sm_job_failed", "sm_error"),
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
    stop(what, " must be named, e.g. ", what, " = list(train = \"data/train.csv\")", call. = FALSE)
  }
  if (anyDuplicated(keys)) {
    stop(what, ": the name ", keys[anyDuplicated(keys)][1], " appears twice", call. = FALSE)
  }
  out <- lapply(seq_along(x), function(i) {
    value <- if (is.list(x)) x[[i]] else unname(x[i])
    if (is.null(value) || (length(value) == 1 && is.na(value))) {
      if (!allow_null_values) {
        stop(what, ": ", keys[i], " has no value", call. = FALSE)
      }
      return(NULL)
    }
    if (values == "character") {
      if (length(value) != 1) {
        stop(what, ": ", keys[i], " must be one value", call. = FALSE)
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
    stop(what, " must be a character vector", call. = FALSE)
  }
  do.call(reticulate::tuple, as.list(unname(x)))
}

.sm_int <- function(x, what) {
  if (is.null(x)) {
    return(NULL)
  }
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x != round(x)) {
    stop(what, " must be a whole number", call. = FALSE)
  }
  as.integer(x)
}

.sm_flag <- function(x, what) {
  if (is.null(x)) {
    return(NULL)
  }
  if (!is.logical(x) || length(x) != 1 || is.na(x)) {
    stop(what, " must be TRUE or FALSE", call. = FALSE)
  }
  x
}

.sm_string <- function(x, what) {
  if (is.null(x)) {
    return(NULL)
  }
  if (!is.character(x) || length(x) != 1 || is.na(x)) {
    stop(what, " must be one string", call. = FALSE)
  }
  x
}

# Extra arguments (...) pass through to the Python function; whole numbers become ints (SageMaker wants
# 3600, not 3600.0: max_runtime, volume_size, ...).
.sm_extra <- function(...) {
  extra <- list(...)
  if (length(extra) && (is.null(names(extra)) || any(!nzchar(names(extra))))) {
    stop("extra arguments must be named (e.g. max_runtime = 3600)", call. = FALSE)
  }
  lapply(extra, function(v) {
    if (is.numeric(v) && length(v) == 1 && !is.na(v) && v == round(v) && abs(v) < .Machine$integer.max) {
      as.integer(v)
    } else {
      v
    }
  })
}
