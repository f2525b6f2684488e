# `$` on handles, as the Python handles' attributes and methods: job$status, job$outputs, job$logs(),
# endpoint$predict(newdata), endpoint$delete(). A name a handle does not have is an error, not NULL.

.sm_job_fields <- c("name", "kind", "backend", "status", "secondary_status", "outputs", "model_data",
                    "failure_reason", "hyperparameters", "elapsed", "local_folder", "logs", "wait", "stop",
                    "metrics", "py")
.sm_endpoint_fields <- c("name", "kind", "backend", "status", "url", "failure_reason", "elapsed", "local_folder",
                         "logs", "wait", "predict", "invoke", "delete", "py")
# Python spellings that mean the same field
.sm_field_aliases <- c(backend_name = "backend", endpoint_name = "name")

#' Fields of job and endpoint handles
#'
#' Handles answer \code{$} like the Python handles' attributes: values are read when asked (the status of a
#' running job changes), methods are functions.
#' \describe{
#'   \item{Jobs (\code{sm_job})}{\code{$name}, \code{$kind}, \code{$backend}, \code{$status},
#'     \code{$secondary_status}, \code{$outputs}, \code{$model_data}, \code{$failure_reason},
#'     \code{$hyperparameters}, \code{$elapsed}, \code{$local_folder}; \code{$logs(print = TRUE)},
#'     \code{$wait(timeout = NULL, progress = NULL)}, \code{$stop(wait = TRUE)}, \code{$metrics(regexes)}.}
#'   \item{Endpoints (\code{sm_endpoint})}{\code{$name}, \code{$kind}, \code{$backend}, \code{$status},
#'     \code{$url}, \code{$failure_reason}, \code{$elapsed}, \code{$local_folder}; \code{$logs()},
#'     \code{$wait()}, \code{$predict(newdata, ...)}, \code{$invoke(body, ...)}, \code{$delete()}.}
#' }
#' \code{$py} is the Python object (\code{sm_py()}). Handles cannot be changed with \code{$<-}. Pipelines and
#' their executions: \link{pipeline-fields}.
#' @param x A handle.
#' @param name A field name.
#' @param value Unused: handles are read-only.
#' @return The field's value, or a function for methods.
#' @examples
#' \dontrun{
#' job <- sm_train("saveRDS(lm(mpg ~ wt, mtcars), file.path(sm_model_dir(), 'model.rds'))", wait = FALSE)
#' job$status
#' job$wait()
#' job$model_data
#' }
#' @name handle-fields
#' @aliases $.sm_job $.sm_endpoint
NULL

#' @rdname handle-fields
#' @export
`$.sm_job` <- function(x, name) {
  .sm_field(x, name, .sm_job_fields)
}

#' @rdname handle-fields
#' @export
`$.sm_endpoint` <- function(x, name) {
  .sm_field(x, name, .sm_endpoint_fields)
}

#' @rdname handle-fields
#' @export
`$<-.sm_job` <- function(x, name, value) {
  .sm_abort("job handles are read-only: `", name, "` cannot be set (sm_config() holds the settings)")
}

#' @rdname handle-fields
#' @export
`$<-.sm_endpoint` <- function(x, name, value) {
  .sm_abort("endpoint handles are read-only: `", name, "` cannot be set (sm_config() holds the settings)")
}

.sm_field <- function(x, name, fields) {
  if (name %in% names(.sm_field_aliases)) {
    name <- .sm_field_aliases[[name]]
  }
  .sm_check_field(x, name, fields)
  switch(name,
    py = .subset2(x, "py"),
    name = as.character(x),
    kind = reticulate::py_to_r(.subset2(x, "py")$kind),
    backend = .sm_get(x, "backend_name"),
    status = sm_status(x),
    outputs = sm_outputs(x),
    logs = function(print = TRUE) sm_logs(x, print = print),
    wait = function(timeout = NULL, progress = NULL) sm_wait(x, timeout = timeout, progress = progress),
    stop = function(wait = TRUE) sm_stop(x, wait = wait),
    metrics = function(regexes) .sm_metrics(x, regexes),
    predict = function(newdata, ...) stats::predict(x, newdata, ...),
    invoke = function(body, ...) sm_invoke(x, body, ...),
    delete = function() sm_delete(x),
    .sm_get(x, name)
  )
}

# A name the handle (or pipeline) does not have: one line listing the ones it has.
.sm_check_field <- function(x, name, fields) {
  if (!name %in% fields) {
    .sm_abort(.sm_what(x), " has no `$", name, "`: use ", paste0("$", setdiff(fields, "py"), collapse = ", "),
              " (or sm_py(h)$", name, " for the Python object)")
  }
  invisible(name)
}

# The last value of each metric in the logs: regexes = list(rmse = "rmse: ([0-9.]+)").
.sm_metrics <- function(h, regexes) {
  values <- .sm_call(.sm_handle(h)$metrics, .sm_dict(regexes, "regexes"))
  as.list(reticulate::py_to_r(values))
}

#' @importFrom utils .DollarNames
#' @export
.DollarNames.sm_job <- function(x, pattern = "") {
  grep(pattern, setdiff(.sm_job_fields, "py"), value = TRUE)
}

#' @export
.DollarNames.sm_endpoint <- function(x, pattern = "") {
  grep(pattern, setdiff(.sm_endpoint_fields, "py"), value = TRUE)
}
