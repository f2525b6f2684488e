# Processing and training jobs: thin R faces of sm_r_magic.api.processing/train and of the Job handle.

#' Run R code as a SageMaker processing job
#'
#' The R code runs in the shared R container (backend \code{"local"}: this machine's R in a job folder;
#' \code{"docker"}: the built image; \code{"sagemaker"}: the real service). Inside the job,
#' \code{sm_input("raw")} is the folder of input \code{raw} and \code{sm_output("train")} the folder whose
#' files become output \code{train}. Progress lines show while waiting.
#'
#' @param code R code: a string, a function whose body is the code, a quoted expression, or an .R file path.
#' @param ... Further named arguments of the Python \code{sm_r_magic.processing()}: \code{volume_size} (GB),
#'   \code{max_runtime} (seconds), \code{dry_run = TRUE} to get the CreateProcessingJob request as a list.
#'   Any other name is an error (\code{sm_usage_error}).
#' @param inputs Named list or vector: input name -> local path, \code{file://} or \code{s3://} URI.
#' @param outputs Output names (\code{c("train", "test")}: default locations), or a named list/vector
#'   name -> URI (\code{NULL} for the default location).
#' @param name Base name of the job (a timestamp suffix makes it unique).
#' @param backend \code{"local"}, \code{"docker"} or \code{"sagemaker"}; default \code{sm_config()$backend}.
#' @param instance_type,instance_count Instances (default from \code{sm_config()}).
#' @param env Named list or vector of environment variables for the job.
#' @param files Extra files put beside the code.
#' @param source_dir Folder whose files are packaged with the code.
#' @param packages R packages installed at job start when missing.
#' @param wait Wait for the end, showing progress (default \code{sm_config()$wait}, TRUE).
#' @param progress \code{"text"} or \code{"none"} (default \code{sm_config()$progress}).
#' @param error_on_failure If the job fails, signal an R error (class \code{sm_job_failed}, whose
#'   \code{$handle} is the failed job; \code{sm_last()} returns it too). FALSE returns the Failed handle.
#' @return An \code{sm_job} handle: \code{job$status}, \code{job$outputs}, \code{job$logs()},
#'   \code{job$wait()}, \code{job$stop()} (see \link{handle-fields}), or \code{sm_status()}, \code{sm_logs()},
#'   \code{sm_wait()}, \code{sm_stop()}, \code{sm_outputs()}.
#' @section Errors: Bad input is an R error of class \code{sm_usage_error} with a one-line message, raised
#'   before anything is created or uploaded; a failed job is an \code{sm_job_failed} (see
#'   \code{error_on_failure}).
#' @examples
#' \dontrun{
#' job <- sm_processing(function() {
#'   df <- read.csv(file.path(sm_input("raw"), "mtcars.csv"))
#'   write.csv(df[df$am == 1, ], file.path(sm_output("train"), "train.csv"), row.names = FALSE)
#' }, inputs = list(raw = "data/mtcars.csv"), outputs = "train")
#' sm_outputs(job)$train
#' }
#' @export
sm_processing <- function(code, ..., inputs = NULL, outputs = NULL, name = NULL, backend = NULL,
                          instance_type = NULL, instance_count = NULL, env = NULL, files = NULL,
                          source_dir = NULL, packages = NULL, wait = NULL, progress = NULL,
                          error_on_failure = TRUE) {
  code <- .sm_code(if (missing(code)) NULL else code)
  api <- .sm_api()
  extra <- .sm_extra(list(...), api$processing, "sm_processing")
  .sm_check_names(inputs, "inputs")
  .sm_check_names(outputs, "outputs")
  .sm_call(.sm_bridge()$check_arguments, packages = .sm_strings(packages, "packages"))
  args <- c(list(code, inputs = .sm_dict(inputs, "inputs"), outputs = .sm_outputs_arg(outputs)),
            .sm_job_args(name, backend, instance_type, instance_count, env, files, source_dir, packages, wait,
                         progress, error_on_failure),
            extra)
  .sm_result(.sm_call_list(api$processing, args))
}

#' Run R code as a SageMaker training job
#'
#' Inside the job: \code{sm_channel("train")}, \code{sm_hp("alpha", 0.5)}, \code{sm_model_dir()}.
#' Everything saved under \code{sm_model_dir()} ends up in model.tar.gz (with the code, so
#' \code{sm_deploy()} can serve it).
#'
#' @inheritParams sm_processing
#' @param ... Further named arguments of the Python \code{sm_r_magic.train()}: \code{volume_size},
#'   \code{max_runtime}, \code{spot = TRUE}, \code{max_wait}, \code{checkpoint_uri}, \code{metrics} (a named
#'   list of regexes, e.g. \code{list(rmse = "rmse: ([0-9.]+)")}), \code{dry_run = TRUE}. Any other name is an
#'   error (\code{sm_usage_error}).
#' @param channels Named list or vector: channel name -> local path, \code{file://} or \code{s3://} URI.
#' @param hyperparameters Named list of values (numbers, strings, logicals; JSON-encoded as the SageMaker
#'   Python SDK does).
#' @return An \code{sm_job} handle; \code{job$model_data} (or \code{sm_model_data(job)}) is the
#'   model.tar.gz location (see \link{handle-fields}).
#' @section Errors: As for \code{sm_processing()}.
#' @examples
#' \dontrun{
#' job <- sm_train(function() {
#'   fit <- lm(mpg ~ wt, data = mtcars)
#'   saveRDS(fit, file.path(sm_model_dir(), "model.rds"))
#' }, name = "mtcars-lm")
#' sm_model_data(job)
#' }
#' @export
sm_train <- function(code, ..., channels = NULL, hyperparameters = NULL, name = NULL, backend = NULL,
                     instance_type = NULL, instance_count = NULL, env = NULL, files = NULL, source_dir = NULL,
                     packages = NULL, wait = NULL, progress = NULL, error_on_failure = TRUE) {
  code <- .sm_code(if (missing(code)) NULL else code)
  api <- .sm_api()
  extra <- .sm_extra(list(...), api$train, "sm_train")
  .sm_check_names(channels, "channels")
  hyperparameters <- .sm_hyperparameters(hyperparameters)
  .sm_call(.sm_bridge()$check_arguments, packages = .sm_strings(packages, "packages"), metrics = extra$metrics,
           hyperparameters = hyperparameters)
  args <- c(list(code, channels = .sm_dict(channels, "channels"), hyperparameters = hyperparameters),
            .sm_job_args(name, backend, instance_type, instance_count, env, files, source_dir, packages, wait,
                         progress, error_on_failure),
            extra)
  .sm_result(.sm_call_list(api$train, args))
}

.sm_job_args <- function(name, backend, instance_type, instance_count, env, files, source_dir, packages, wait,
                         progress, error_on_failure) {
  args <- list(
    name = .sm_string(name, "name"), backend = .sm_string(backend, "backend"),
    instance_type = .sm_string(instance_type, "instance_type"),
    instance_count = .sm_int(instance_count, "instance_count"),
    env = .sm_dict(.sm_check_env(env), "env"),
    files = .sm_strings(if (is.null(files)) NULL else path.expand(files), "files"),
    source_dir = .sm_string(if (is.null(source_dir)) NULL else path.expand(source_dir), "source_dir"),
    packages = .sm_strings(packages, "packages"),
    wait = .sm_flag(wait, "wait"), progress = .sm_string(progress, "progress"),
    raise_on_failure = .sm_flag(error_on_failure, "error_on_failure")
  )
  args[!vapply(args, is.null, logical(1))]
}

# SageMaker's rule for channel, input and output names (the magics' --channel/--input/--output check it).
.sm_check_names <- function(x, what) {
  keys <- if (is.character(x) && is.null(names(x))) x else names(x)
  bad <- keys[!is.na(keys) & nzchar(keys) & !grepl("^[A-Za-z0-9._-]{1,64}$", keys)]
  if (length(bad)) {
    .sm_abort(what, ": the name \"", bad[1], "\" may only hold letters, digits, '.', '-' and '_' (at most 64)")
  }
  invisible(x)
}

.sm_check_env <- function(env) {
  bad <- names(env)[!is.na(names(env)) & nzchar(names(env)) & !grepl("^[A-Za-z_][A-Za-z0-9_]*$", names(env))]
  if (length(bad)) {
    .sm_abort("env: \"", bad[1], "\" is not an environment variable name (letters, digits and '_')")
  }
  env
}

.sm_hyperparameters <- function(hyperparameters) {
  if (is.null(hyperparameters) || length(hyperparameters) == 0) {
    return(NULL)
  }
  hyperparameters <- as.list(hyperparameters)
  # 500 means 500, not 500.0: whole numbers go as integers (as --hp ntree=500 does in the magic)
  hyperparameters <- lapply(hyperparameters, function(v) {
    if (is.double(v) && length(v) == 1 && !is.na(v) && v == round(v) && abs(v) < .Machine$integer.max) {
      as.integer(v)
    } else {
      v
    }
  })
  .sm_dict(hyperparameters, "hyperparameters", values = "any")
}

# A Python result as R: handles wrapped, dry-run requests (dicts) as lists.
.sm_result <- function(value) {
  if (inherits(value, "python.builtin.object") && reticulate::py_has_attr(value, "kind")) {
    handle <- .sm_wrap(value)
    .sm$last <- handle
    return(handle)
  }
  reticulate::py_to_r(value)
}

.sm_wrap <- function(py) {
  kind <- reticulate::py_to_r(py$kind)
  classes <- c(endpoint = "sm_endpoint", pipeline = "sm_execution")
  structure(list(py = py), class = if (kind %in% names(classes)) classes[[kind]] else "sm_job")
}

.sm_handle <- function(h, what = "h") {
  if (!inherits(h, c("sm_job", "sm_endpoint", "sm_execution"))) {
    .sm_abort(what, " must be a job, endpoint or pipeline execution handle (from sm_processing(), sm_train(), ",
              "sm_deploy(), a pipeline's $run() or sm_attach()), not ", class(h)[1])
  }
  h$py
}

# Functions that read what only a job has (outputs, model data): a pipeline execution's are its steps' jobs.
.sm_job_only <- function(h, r_function) {
  if (inherits(h, "sm_execution")) {
    .sm_abort(r_function, "() reads a job: for a pipeline execution, give one of its steps' jobs, e.g. ",
              r_function, "(run$step_job(\"fit\"))")
  }
  invisible(h)
}

.sm_get <- function(h, attr) {
  py <- .sm_handle(h)
  .sm_py_value(.sm_call(.sm$builtins$getattr, py, attr))
}

#' The handle of the latest job, endpoint or pipeline execution of this R session
#'
#' Also after a failed job: \code{sm_logs(sm_last())}.
#' @return An \code{sm_job}, \code{sm_endpoint} or \code{sm_execution}, or NULL.
#' @export
sm_last <- function() {
  .sm$last
}

#' Re-attach to a job, endpoint or pipeline execution by name
#'
#' @param name The job's (or endpoint's) name, or its base name: the latest job whose name starts with it; or
#'   a pipeline execution's id (\code{sm_executions()} lists them).
#' @param backend The backend it ran on (default: the configured one is searched first, then the others).
#' @return An \code{sm_job}, \code{sm_endpoint} or \code{sm_execution} handle.
#' @export
sm_attach <- function(name, backend = NULL) {
  name <- .sm_string(name, "name")
  api <- .sm_api()
  .sm_result(.sm_call(api$attach, name, backend = .sm_string(backend, "backend")))
}

#' Jobs of this session and of the backend
#'
#' @param backend Backend to list (default \code{sm_config()$backend}; local: every job under the local root).
#' @return A data.frame with name, kind, backend, status and elapsed seconds; attribute \code{handles} holds
#'   the handles (also \code{sm_attach(name)}).
#' @export
sm_jobs <- function(backend = NULL) {
  api <- .sm_api()
  handles <- .sm_call(api$jobs, backend = .sm_string(backend, "backend"))
  .sm_table(handles)
}

.sm_table <- function(handles) {
  rows <- reticulate::py_to_r(.sm_call(.sm_bridge()$job_table, handles))
  table <- data.frame(name = as.character(unlist(rows$name)), kind = as.character(unlist(rows$kind)),
                      backend = as.character(unlist(rows$backend)), status = as.character(unlist(rows$status)),
                      elapsed = as.numeric(unlist(rows$elapsed)), stringsAsFactors = FALSE)
  n <- reticulate::py_to_r(.sm$builtins$len(handles))
  attr(table, "handles") <- lapply(seq_len(n) - 1L, function(i) .sm_wrap(reticulate::py_get_item(handles, i)))
  table
}

# -- handle functions ---------------------------------------------------------------------------------------

#' Status of a job, endpoint or pipeline execution
#'
#' @param h A handle (\code{sm_job}, \code{sm_endpoint} or \code{sm_execution}).
#' @return A string: InProgress, Completed, Failed, Stopped (jobs); Creating, InService, Failed, Deleted
#'   (endpoints); Executing, Stopping, Stopped, Failed, Succeeded (pipeline executions).
#' @export
sm_status <- function(h) {
  .sm_get(h, "status")
}

#' Logs of a job, endpoint or pipeline execution
#'
#' A pipeline execution's logs are its steps' jobs' output, each line labelled with its step.
#' @param h A handle.
#' @param print Write the logs to the console (\code{cat}).
#' @return The logs as one string, invisibly.
#' @export
sm_logs <- function(h, print = TRUE) {
  py <- .sm_handle(h)
  text <- reticulate::py_to_r(.sm_call(py$logs))
  if (isTRUE(print)) {
    cat(text)
  }
  invisible(text)
}

#' Wait for a job or pipeline execution to end (or an endpoint to be InService), showing progress
#'
#' An interrupt (Esc / Ctrl-C) detaches: the job keeps running; re-attach with \code{sm_attach()}.
#' @param h A handle.
#' @param timeout Seconds to wait at most (NULL: until the end).
#' @param progress \code{"text"} or \code{"none"} (default \code{sm_config()$progress}).
#' @return \code{h}, invisibly.
#' @export
sm_wait <- function(h, timeout = NULL, progress = NULL) {
  py <- .sm_handle(h)
  progress <- .sm_string(progress, "progress")
  if (is.null(progress)) {
    progress <- reticulate::py_to_r(.sm_api()$config()$progress)
  }
  .sm_call(py$wait, progress = progress, timeout = timeout)
  invisible(h)
}

#' Stop a running job or pipeline execution
#'
#' SIGTERM reaches R inside the job; the status becomes Stopped. Stopping a pipeline execution stops its
#' running jobs and starts no further step.
#' @param h A job or pipeline execution handle.
#' @param wait Wait until it has stopped.
#' @return \code{h}, invisibly.
#' @export
sm_stop <- function(h, wait = TRUE) {
  if (!inherits(h, c("sm_job", "sm_execution"))) {
    .sm_abort("sm_stop() stops jobs and pipeline executions; delete an endpoint with sm_delete()")
  }
  .sm_call(h$py$stop, wait = .sm_flag(wait, "wait"))
  invisible(h)
}

#' Where a job's results are
#'
#' @param h A job handle.
#' @return A named list: processing output name -> location; for training jobs \code{model} and
#'   \code{output} (model.tar.gz, output.tar.gz).
#' @export
sm_outputs <- function(h) {
  .sm_job_only(h, "sm_outputs")
  outputs <- .sm_get(h, "outputs")
  if (is.null(outputs) || !length(outputs)) {
    return(stats::setNames(list(), character()))
  }
  as.list(outputs)
}

#' The model artifact of a training job
#'
#' @param h A training job handle.
#' @return The model.tar.gz location (path or s3:// URI), or NULL while there is none.
#' @export
sm_model_data <- function(h) {
  .sm_job_only(h, "sm_model_data")
  .sm_get(h, "model_data")
}

#' Why a job, endpoint or pipeline execution failed
#'
#' @param h A handle.
#' @return The failure reason (the R error message and a short traceback), or NULL.
#' @export
sm_failure_reason <- function(h) {
  .sm_get(h, "failure_reason")
}

#' The Python object behind a handle
#'
#' For everything the R functions do not cover, e.g. \code{sm_py(job)$hyperparameters} or
#' \code{sm_py(job)$metrics(list(rmse = "rmse: ([0-9.]+)"))}. Python errors from it are Python errors.
#' @param h A handle.
#' @param convert Convert results to R values (reticulate's \code{convert}).
#' @return A reticulate Python object (sm_r_magic Job or Predictor).
#' @export
sm_py <- function(h, convert = TRUE) {
  py <- .sm_handle(h)
  if (isTRUE(convert)) .sm$converting(py) else py
}

#' @export
format.sm_job <- function(x, ...) {
  reticulate::py_to_r(.sm_call(x$py$summary))
}

#' @export
print.sm_job <- function(x, ...) {
  cat(format(x), "\n", sep = "")
  invisible(x)
}

#' @export
as.character.sm_job <- function(x, ...) {
  reticulate::py_to_r(x$py$name)
}
