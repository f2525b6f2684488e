# Pipelines made from the jobs an R user ran: thin R faces of sm_r_magic.api.pipeline, the Pipeline object
# and the PipelineExecution handle (issue 13: the jobs become the pipeline).

#' Make a SageMaker Pipeline from the jobs you ran
#'
#' Each job handle becomes a step whose arguments are exactly the request its job sent, named after the job's
#' \code{name} (\code{"prep"}, \code{"fit"}, \code{"evaluate"}). Steps are chained by what they read and write:
#' an input that is another step's output (a processing output, a model artifact) becomes a reference to it;
#' every other input becomes a pipeline parameter whose default is the job's own input. Each execution writes
#' its outputs under its own prefix, so executions never overwrite each other. Everything is checked now,
#' before anything exists; \code{$run()} starts an execution.
#'
#' @param name Pipeline name: letters, digits and hyphens (e.g. \code{"mtcars"}).
#' @param steps The job handles to chain (from \code{sm_processing()}, \code{sm_train()} or
#'   \code{sm_attach()}), in any order: \code{list(prep, fit, ev)}.
#' @param condition Register only when this holds: \code{"STEP.OUTPUT/FILE:JSON.PATH OP NUMBER"}, e.g.
#'   \code{"evaluate.evaluation/evaluation.json:regression_metrics.rmse.value <= 3.5"} (OP: \code{<=},
#'   \code{<}, \code{>=}, \code{>}, \code{==}, \code{!=}). The file is a JSON report a processing step wrote,
#'   e.g. with \code{sm_report(x, output = "evaluation")} in its code.
#' @param register A model package group the training step's model is registered into (when the condition
#'   holds). Versions are numbered 1, 2, ...; \code{sm_models()} lists them, \code{sm_approve()} approves one,
#'   \code{sm_deploy(model_package = )} serves the newest approved one.
#' @param inference The code registered versions are served with: an endpoint handle from \code{sm_deploy()}
#'   (its code), the path of an R file defining \code{model_fn}, or R code defining \code{model_fn} (a function
#'   whose body is the code, a string, a quoted expression). Default: the code saved with the model, which must
#'   hold \code{deploy.R} or \code{inference.R}.
#' @param fail_message With \code{condition}: fail the execution with this message when the condition does
#'   not hold (a Fail step).
#' @param cache Reuse a step's earlier run with the same arguments for this long: \code{"30d"}, \code{"12h"},
#'   \code{"90m"}, or ISO 8601 such as \code{"PT1H"}.
#' @param model_step With \code{register} and several training steps: the name of the one whose model is
#'   registered.
#' @param backend Where \code{$run()} runs it: \code{"local"}, \code{"docker"} or \code{"sagemaker"} (default:
#'   where the jobs ran; \code{"sagemaker"} moves local jobs' code and data to S3).
#' @param ... Nothing else: any other argument is an error (\code{sm_usage_error}).
#' @return An \code{sm_pipeline}: \code{pipe$run(parameters = list(...), backend = , wait = )} starts an
#'   execution and returns its \code{sm_execution} handle; \code{pipe$definition()} is the pipeline definition
#'   CreatePipeline takes (\code{json = TRUE}: as JSON text); \code{pipe$parameters}, \code{pipe$steps},
#'   \code{pipe$executions()} (see \link{pipeline-fields}). Printing it describes the steps, the condition and
#'   the registration.
#' @section Errors: Bad input is an \code{sm_usage_error} with one line, raised before anything exists: steps
#'   that are not job handles or ran on different backends, a cycle, a condition on a step, output or file no
#'   step writes, an unknown operator, \code{register} without a training step, an invalid pipeline or group
#'   name, a bad cache duration. An execution that fails is an \code{sm_execution_failed} (also an
#'   \code{sm_job_failed}) whose message is the failed step's R error and whose \code{$handle} is the execution.
#' @examples
#' \dontrun{
#' prep <- sm_processing("prep.R", inputs = list(raw = "data/mtcars.csv"), outputs = c("train", "test"),
#'                       name = "prep")
#' fit <- sm_train("fit.R", channels = list(train = prep$outputs$train), name = "fit")
#' ev <- sm_processing("evaluate.R", inputs = list(model = fit$model_data, test = prep$outputs$test),
#'                     outputs = "evaluation", name = "evaluate")
#' pipe <- sm_pipeline("mtcars", steps = list(prep, fit, ev),
#'                     condition = "evaluate.evaluation/evaluation.json:regression_metrics.rmse.value <= 3.5",
#'                     register = "mtcars-models", inference = "serve.R")
#' run <- pipe$run()
#' run$steps
#' run2 <- pipe$run(parameters = list(raw = "data/mtcars-2027.csv"))
#' sm_models("mtcars-models")
#' }
#' @export
sm_pipeline <- function(name, steps, condition = NULL, register = NULL, inference = NULL, fail_message = NULL,
                        cache = NULL, model_step = NULL, backend = NULL, ...) {
  .sm_no_extras(list(...), "sm_pipeline")
  if (missing(name)) {
    .sm_abort("name is missing: name the pipeline, e.g. sm_pipeline(\"mtcars\", steps = list(prep, fit, ev))")
  }
  if (missing(steps)) {
    .sm_abort("steps is missing: give the handles of the jobs to chain, e.g. steps = list(prep, fit, ev)")
  }
  args <- list(.sm_string(name, "name"), .sm_steps(steps),
               condition = .sm_string(condition, "condition"), register = .sm_string(register, "register"),
               fail_message = .sm_string(fail_message, "fail_message"), cache = .sm_string(cache, "cache"),
               model_step = .sm_string(model_step, "model_step"), backend = .sm_string(backend, "backend"))
  inference <- .sm_inference(inference)
  on.exit(if (isTRUE(attr(inference, "temporary"))) unlink(dirname(inference), recursive = TRUE), add = TRUE)
  args$inference <- if (is.character(inference)) as.character(inference) else inference
  args <- args[!vapply(args, is.null, logical(1))]
  py <- .sm_call_list(.sm_api()$pipeline, args)
  structure(list(py = py), class = "sm_pipeline")
}

# Any argument beyond the function's own is a usage error naming it (with a near miss suggested).
.sm_no_extras <- function(extra, r_function, known = NULL, help = r_function) {
  if (!length(extra)) {
    return(invisible())
  }
  given <- names(extra)
  if (is.null(given) || !nzchar(given[1])) {
    .sm_abort(r_function, "() takes its arguments by name here (see ?", help, ")")
  }
  .sm_unknown_argument(given[1], r_function, character(), known = known, help = help)
}

# steps = list(prep, fit, ev) (or one handle) as a tuple of the Python Job objects.
.sm_steps <- function(steps) {
  if (inherits(steps, "sm_job")) {
    steps <- list(steps)
  }
  if (!is.list(steps) || inherits(steps, c("sm_endpoint", "sm_execution", "sm_pipeline"))) {
    .sm_abort("steps must be a list of job handles (from sm_processing(), sm_train() or sm_attach()), e.g. ",
              "steps = list(prep, fit, ev), not ", .sm_what(steps))
  }
  for (i in seq_along(steps)) {
    if (!inherits(steps[[i]], "sm_job")) {
      .sm_abort("steps[[", i, "]] is ", .sm_what(steps[[i]]), ", not a job handle: give the handles ",
                "sm_processing() / sm_train() returned, e.g. steps = list(prep, fit, ev)")
    }
  }
  do.call(reticulate::tuple, lapply(unname(steps), function(h) h$py))
}

.sm_what <- function(x) {
  kinds <- c(sm_endpoint = "an endpoint handle", sm_execution = "a pipeline execution handle",
             sm_pipeline = "a pipeline", sm_job = "a job handle")
  known <- intersect(names(kinds), class(x))
  if (length(known)) kinds[[known[1]]] else paste0("a ", class(x)[1])
}

# inference: an endpoint handle, an R file (checked by Python), or R code, written to a temporary
# inference.R that Python reads once now (the pipeline keeps its text).
.sm_inference <- function(inference) {
  if (is.null(inference)) {
    return(NULL)
  }
  if (inherits(inference, "sm_endpoint")) {
    return(inference$py)
  }
  if (inherits(inference, c("sm_job", "sm_execution", "sm_pipeline"))) {
    .sm_abort("inference must be an endpoint handle (from sm_deploy()), an R file or R code defining model_fn, ",
              "not ", .sm_what(inference))
  }
  if (is.character(inference) && length(inference) == 1 && !is.na(inference) &&
      !grepl("\n", inference, fixed = TRUE) && grepl("\\.[Rr]$", trimws(inference))) {
    return(path.expand(trimws(inference)))
  }
  code <- .sm_code(inference, "inference")
  if (!grepl("(^|\n)\\s*[`'\"]?model_fn[`'\"]?\\s*(<<?-|=)", code)) {
    .sm_abort("inference: the code defines no model_fn: write model_fn <- function(model_dir) ... (and ",
              "optionally input_fn, predict_fn, output_fn)")
  }
  folder <- tempfile("sm-inference-")
  dir.create(folder)
  path <- file.path(folder, "inference.R")
  writeLines(enc2utf8(code), path, useBytes = TRUE)
  structure(path, temporary = TRUE)
}

#' Fields of pipelines and pipeline executions
#'
#' \describe{
#'   \item{Pipelines (\code{sm_pipeline}, from \code{sm_pipeline()})}{\code{$name}, \code{$steps} (the job
#'     handles, named after their steps), \code{$parameters} (name -> default value), \code{$backend};
#'     \code{$run(parameters = NULL, backend = NULL, wait = NULL, progress = NULL, error_on_failure = TRUE)}
#'     starts an execution and returns its handle (\code{parameters}: a named list replacing the jobs' inputs,
#'     e.g. \code{list(raw = "data/new.csv")}; \code{wait = FALSE} returns at once);
#'     \code{$definition(backend = NULL, json = FALSE)} the pipeline definition CreatePipeline takes (a list,
#'     or JSON text); \code{$executions(backend = NULL)} its executions as \code{sm_executions()} lists them.}
#'   \item{Executions (\code{sm_execution}, from \code{$run()}, \code{sm_executions()} or
#'     \code{sm_attach(EXECUTION_ID)})}{\code{$name} (the execution id), \code{$pipeline}, \code{$kind},
#'     \code{$backend}, \code{$status} (Executing, Stopping, Stopped, Failed, Succeeded), \code{$steps} (a
#'     data.frame: step, type, status, started, ended, job, cached, outcome, failure_reason), \code{$parameters},
#'     \code{$failure_reason}, \code{$elapsed}, \code{$local_folder}, \code{$definition};
#'     \code{$step_job("fit")} (the \code{sm_job} a step ran: its logs, outputs, model data),
#'     \code{$logs(print = TRUE)} (every step's output, each line labelled with its step),
#'     \code{$wait(timeout = NULL, progress = NULL)}, \code{$stop(wait = TRUE)}.}
#' }
#' \code{sm_status()}, \code{sm_logs()}, \code{sm_wait()}, \code{sm_stop()} and \code{sm_failure_reason()} take
#' executions too. \code{$py} is the Python object. Neither can be changed with \code{$<-}.
#' @param x A pipeline or execution.
#' @param name A field name.
#' @param value Unused: they are read-only.
#' @return The field's value, or a function for methods.
#' @examples
#' \dontrun{
#' run <- pipe$run(wait = FALSE)
#' run$status
#' run$wait()
#' run$steps
#' sm_logs(run$step_job("evaluate"))
#' }
#' @name pipeline-fields
#' @aliases $.sm_pipeline $.sm_execution
NULL

.sm_pipeline_fields <- c("name", "steps", "parameters", "backend", "run", "definition", "executions", "py")
.sm_execution_fields <- c("name", "pipeline", "kind", "backend", "status", "steps", "parameters", "failure_reason",
                          "elapsed", "local_folder", "definition", "step_job", "logs", "wait", "stop", "py")

#' @rdname pipeline-fields
#' @export
`$.sm_pipeline` <- function(x, name) {
  .sm_check_field(x, name, .sm_pipeline_fields)
  py <- .subset2(x, "py")
  switch(name,
    py = py,
    name = reticulate::py_to_r(py$name),
    steps = .sm_pipeline_steps(py),
    parameters = as.list(reticulate::py_to_r(.sm_call(.sm$builtins$getattr, py, "parameters"))),
    backend = reticulate::py_to_r(py$backend_name),
    run = function(parameters = NULL, backend = NULL, wait = NULL, progress = NULL, error_on_failure = TRUE, ...) {
      .sm_no_extras(list(...), "$run", c("parameters", "backend", "wait", "progress", "error_on_failure"),
                    help = "pipeline-fields")
      .sm_run(py, parameters, backend, wait, progress, error_on_failure)
    },
    definition = function(backend = NULL, json = FALSE) .sm_definition(py, backend, json),
    executions = function(backend = NULL) {
      .sm_execution_table(.sm_call(py$executions, backend = .sm_string(backend, "backend")))
    }
  )
}

.sm_pipeline_steps <- function(py) {
  steps <- .sm$builtins$list(py$steps)
  jobs <- lapply(seq_len(reticulate::py_to_r(.sm$builtins$len(steps))) - 1L,
                 function(i) reticulate::py_get_item(steps, i))
  handles <- lapply(jobs, .sm_wrap)
  names(handles) <- vapply(jobs, function(job) reticulate::py_to_r(job$base_name), character(1))
  handles
}

# The definition through its JSON, so that JSON arrays stay lists (a list of one string stays a list).
.sm_definition <- function(py, backend, json) {
  text <- reticulate::py_to_r(.sm_call(.sm_bridge()$definition_json, py, .sm_string(backend, "backend")))
  if (isTRUE(.sm_flag(json, "json"))) {
    return(structure(text, class = "json"))
  }
  jsonlite::fromJSON(text, simplifyVector = FALSE)
}

# pipe$run(): the execution's handle; a failed execution is an sm_execution_failed unless error_on_failure is
# FALSE (then its handle is returned, Failed).
.sm_run <- function(py, parameters, backend, wait, progress, error_on_failure) {
  error_on_failure <- .sm_flag(error_on_failure, "error_on_failure")
  args <- list(parameters = .sm_parameters(parameters), backend = .sm_string(backend, "backend"),
               wait = .sm_flag(wait, "wait"), progress = .sm_string(progress, "progress"))
  args <- args[!vapply(args, is.null, logical(1))]
  execution <- tryCatch(.sm_call_list(py$run, args), sm_execution_failed = function(e) {
    if (error_on_failure) stop(e)
    e$handle
  })
  if (inherits(execution, "sm_execution")) execution else .sm_result(execution)
}

# parameters = list(raw = "data/new.csv"): strings (paths with ~ expanded).
.sm_parameters <- function(parameters) {
  if (is.null(parameters) || !length(parameters)) {
    return(NULL)
  }
  if (!is.list(parameters) && !is.character(parameters)) {
    .sm_abort("parameters must be a named list, e.g. parameters = list(raw = \"data/new.csv\")")
  }
  values <- lapply(parameters, function(v) if (is.character(v) && length(v) == 1) path.expand(v) else v)
  .sm_dict(values, "parameters")
}

#' @rdname pipeline-fields
#' @export
`$.sm_execution` <- function(x, name) {
  .sm_check_field(x, name, .sm_execution_fields)
  py <- .subset2(x, "py")
  switch(name,
    py = py,
    name = as.character(x),
    pipeline = reticulate::py_to_r(py$pipeline_name),
    kind = "pipeline",
    backend = .sm_get(x, "backend_name"),
    status = sm_status(x),
    steps = .sm_execution_steps(x),
    definition = .sm_get(x, "definition"),
    step_job = function(step) .sm_step_job(x, step),
    logs = function(print = TRUE) sm_logs(x, print = print),
    wait = function(timeout = NULL, progress = NULL) sm_wait(x, timeout = timeout, progress = progress),
    stop = function(wait = TRUE) sm_stop(x, wait = wait),
    .sm_get(x, name)
  )
}

.sm_step_job <- function(x, step) {
  step <- .sm_string(step, "step")
  if (is.null(step)) {
    .sm_abort("step_job(step): name a step, e.g. run$step_job(\"fit\") (run$steps lists them)")
  }
  handle <- .sm_wrap(.sm_call(.sm_bridge()$step_job, x$py, step))
  .sm$last <- handle
  handle
}

# Python lists with None in them as R vectors with NA (unlist would drop the NULLs).
.sm_column <- function(values, type = character(1)) {
  vapply(values, function(v) if (is.null(v)) type[NA_integer_] else v, type, USE.NAMES = FALSE)
}

.sm_time <- function(values) {
  as.POSIXct(.sm_column(values, numeric(1)), origin = "1970-01-01")
}

.sm_execution_steps <- function(x) {
  rows <- reticulate::py_to_r(.sm_call(.sm_bridge()$execution_steps, x$py))
  data.frame(step = .sm_column(rows$step), type = .sm_column(rows$type), status = .sm_column(rows$status),
             started = .sm_time(rows$started), ended = .sm_time(rows$ended), job = .sm_column(rows$job),
             cached = .sm_column(rows$cached, logical(1)), outcome = .sm_column(rows$outcome),
             failure_reason = .sm_column(rows$failure_reason), stringsAsFactors = FALSE)
}

#' Pipeline executions
#'
#' @param pipeline Only this pipeline's executions (default: every pipeline's).
#' @param backend Backend to list (default \code{sm_config()$backend}; local and docker: every execution under
#'   the local root).
#' @return A data.frame, oldest first, with execution (its id), pipeline, backend, status, created and elapsed
#'   seconds; attribute \code{handles} holds the \code{sm_execution} handles (also
#'   \code{sm_attach(EXECUTION_ID)}).
#' @examples
#' \dontrun{
#' sm_executions("mtcars")
#' run <- sm_attach(tail(sm_executions("mtcars")$execution, 1))
#' }
#' @export
sm_executions <- function(pipeline = NULL, backend = NULL) {
  api <- .sm_api()
  .sm_execution_table(.sm_call(api$executions, .sm_string(pipeline, "pipeline"),
                               backend = .sm_string(backend, "backend")))
}

.sm_execution_table <- function(executions) {
  rows <- reticulate::py_to_r(.sm_call(.sm_bridge()$execution_table, executions))
  table <- data.frame(execution = .sm_column(rows$execution), pipeline = .sm_column(rows$pipeline),
                      backend = .sm_column(rows$backend), status = .sm_column(rows$status),
                      created = .sm_time(rows$created), elapsed = .sm_column(rows$elapsed, numeric(1)),
                      stringsAsFactors = FALSE)
  n <- reticulate::py_to_r(.sm$builtins$len(executions))
  attr(table, "handles") <- lapply(seq_len(n) - 1L, function(i) .sm_wrap(reticulate::py_get_item(executions, i)))
  table
}

#' @export
format.sm_pipeline <- function(x, ...) {
  reticulate::py_to_r(.sm_call(.sm_bridge()$pipeline_text, x$py))
}

#' @export
print.sm_pipeline <- function(x, ...) {
  cat(format(x), "\n", sep = "")
  invisible(x)
}

#' @export
as.character.sm_pipeline <- function(x, ...) {
  reticulate::py_to_r(x$py$name)
}

#' @export
format.sm_execution <- function(x, ...) {
  reticulate::py_to_r(.sm_call(x$py$summary))
}

#' @export
print.sm_execution <- function(x, ...) {
  cat(format(x), "\n", sep = "")
  invisible(x)
}

#' @export
as.character.sm_execution <- function(x, ...) {
  reticulate::py_to_r(x$py$name)
}

#' @export
.DollarNames.sm_pipeline <- function(x, pattern = "") {
  grep(pattern, setdiff(.sm_pipeline_fields, "py"), value = TRUE)
}

#' @export
.DollarNames.sm_execution <- function(x, pattern = "") {
  grep(pattern, setdiff(.sm_execution_fields, "py"), value = TRUE)
}

#' @rdname pipeline-fields
#' @export
`$<-.sm_pipeline` <- function(x, name, value) {
  .sm_abort("a pipeline is read-only: `", name, "` cannot be set (make another with sm_pipeline())")
}

#' @rdname pipeline-fields
#' @export
`$<-.sm_execution` <- function(x, name, value) {
  .sm_abort("pipeline execution handles are read-only: `", name, "` cannot be set")
}
