# Endpoints: sm_r_magic.api.deploy and the Predictor handle, with R data in and out.

#' Deploy a trained model as an endpoint
#'
#' \code{code} defines \code{model_fn(model_dir)} and optionally \code{input_fn(body, content_type)},
#' \code{predict_fn(data, model)}, \code{output_fn(prediction, accept)}; the defaults read CSV (with a header)
#' or JSON into a data.frame, call \code{predict(model, newdata = data)} and answer one value per line.
#' Without code, the endpoint serves the code saved with the model (\code{code/deploy.R}).
#'
#' \code{model_package = "group"} deploys the newest Approved version of a model package group (a pipeline's
#' \code{register}; \code{sm_models()} lists the versions, \code{sm_approve()} approves one), or
#' \code{"group/3"} that version, with the image, model data and inference code it was registered with: no code
#' is needed (code given here replaces the registered code).
#'
#' @inheritParams sm_processing
#' @param code Inference code (string, function body, quoted expression or .R file), or NULL.
#' @param model A training job handle, a training job name, or a model.tar.gz path / URI. Default: this
#'   session's latest training job.
#' @param model_package A registered version to deploy instead of \code{model}: \code{"group"} (its newest
#'   Approved version) or \code{"group/N"}.
#' @param ... Further named arguments of the Python \code{sm_r_magic.deploy()} (\code{dry_run = TRUE} returns
#'   the three SageMaker requests as a list). Any other name is an error (\code{sm_usage_error}).
#' @param serverless \code{"MEMORY_MB[,MAX_CONCURRENCY]"} for a serverless endpoint (sagemaker).
#' @param workers R worker processes per instance (0: one per CPU).
#' @param keep Keep a local endpoint running after this R session ends.
#' @return An \code{sm_endpoint} handle: \code{endpoint$predict(newdata)}, \code{endpoint$status},
#'   \code{endpoint$delete()} (see \link{handle-fields}), or \code{predict()}, \code{sm_status()},
#'   \code{sm_logs()}, \code{sm_delete()}.
#' @examples
#' \dontrun{
#' job <- sm_train(function() saveRDS(lm(mpg ~ wt, mtcars), file.path(sm_model_dir(), "model.rds")))
#' ep <- sm_deploy(function() {
#'   model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))
#' }, model = job)
#' predict(ep, data.frame(wt = c(2.5, 3)))
#' sm_delete(ep)
#'
#' ep <- sm_deploy(model_package = "mtcars-models")   # the newest approved version
#' }
#' @export
sm_deploy <- function(code = NULL, ..., model = NULL, model_package = NULL, name = NULL, backend = NULL,
                      instance_type = NULL, instance_count = NULL, env = NULL, files = NULL, source_dir = NULL,
                      packages = NULL, serverless = NULL, workers = NULL, keep = FALSE, wait = NULL,
                      progress = NULL, error_on_failure = TRUE) {
  code <- .sm_code(code, allow_null = TRUE)
  api <- .sm_api()
  if (!reticulate::py_has_attr(api, "deploy")) {
    .sm_abort("this sm_r_magic (", .sm$version, ") has no deploy(): upgrade the Python package")
  }
  extra <- .sm_extra(list(...), api$deploy, "sm_deploy")
  .sm_call(.sm_bridge()$check_arguments, packages = .sm_strings(packages, "packages"))
  if (inherits(model, "sm_job")) {
    model <- model$py
  } else if (!is.null(model)) {
    model <- .sm_string(model, "model")
    if (grepl("\\.tar\\.gz$", model) && !grepl("^[a-z0-9]+://", model)) {
      model <- path.expand(model)
    }
  }
  args <- .sm_job_args(name, backend, instance_type, instance_count, env, files, source_dir, packages, wait,
                       progress, error_on_failure)
  if (!is.null(serverless)) {
    args$serverless <- as.character(serverless)
  }
  args$workers <- .sm_int(workers, "workers")
  args$keep <- .sm_flag(keep, "keep")
  args$model <- model
  args$model_package <- .sm_string(model_package, "model_package")
  args <- args[!vapply(args, is.null, logical(1))]
  .sm_result(.sm_call_list(api$deploy, c(list(code), args, extra)))
}

#' Endpoints of this session and of the backend
#'
#' @inheritParams sm_jobs
#' @return A data.frame like \code{sm_jobs()}, attribute \code{handles} with the \code{sm_endpoint}s.
#' @export
sm_endpoints <- function(backend = NULL) {
  api <- .sm_api()
  .sm_table(.sm_call(api$endpoints, backend = .sm_string(backend, "backend")))
}

#' Predictions from an endpoint
#'
#' @param object An \code{sm_endpoint}.
#' @param newdata A data.frame or matrix (sent as CSV with a header row), a list (sent as JSON), a string
#'   (sent as is) or a raw vector.
#' @param content_type Request content type (default: text/csv for data frames, matrices and strings,
#'   application/json for lists).
#' @param accept Response content type (default: the request's).
#' @param ... Unused.
#' @return A numeric (or character) vector for a one-column answer, else a data.frame; parsed JSON for
#'   application/json; a raw vector for other content types.
#' @export
predict.sm_endpoint <- function(object, newdata, content_type = NULL, accept = NULL, ...) {
  if (missing(newdata)) {
    .sm_abort("predict(endpoint, newdata): newdata is missing")
  }
  content_type <- .sm_string(content_type, "content_type")
  if (is.null(content_type)) {
    content_type <- if (is.list(newdata) && !is.data.frame(newdata)) "application/json" else "text/csv"
  }
  body <- .sm_serialize(newdata, content_type)
  answer <- sm_invoke(object, body, content_type = content_type, accept = accept)
  .sm_deserialize(answer$body, answer$content_type)
}

#' Send raw bytes to an endpoint
#'
#' @param h An \code{sm_endpoint}.
#' @param body A string or raw vector.
#' @param content_type,accept Content types.
#' @return \code{list(body = <raw>, content_type = <string>)}.
#' @export
sm_invoke <- function(h, body, content_type = "text/csv", accept = NULL) {
  if (!inherits(h, "sm_endpoint")) {
    .sm_abort("sm_invoke()/predict() need an endpoint handle (from sm_deploy() or sm_attach())")
  }
  if (!is.raw(body)) {
    body <- enc2utf8(paste(.sm_string(body, "body"), collapse = "\n"))
  }
  result <- .sm_call(.sm_bridge()$invoke, h$py, body, content_type, .sm_string(accept, "accept"))
  list(body = reticulate::py_to_r(reticulate::py_get_item(result, 0L)),
       content_type = reticulate::py_to_r(reticulate::py_get_item(result, 1L)))
}

.sm_serialize <- function(data, content_type) {
  if (is.raw(data)) {
    return(data)
  }
  if (is.character(data) && !is.matrix(data)) {
    return(paste(data, collapse = "\n"))
  }
  type <- sub(";.*$", "", content_type)
  if (identical(type, "text/csv")) {
    if (is.matrix(data)) {
      data <- as.data.frame(data)
    }
    if (is.atomic(data) && is.null(dim(data))) {
      .sm_abort("text/csv: give a data.frame or matrix with named columns, not a bare vector")
    }
    con <- textConnection("csv_text", "w", local = TRUE)
    on.exit(close(con))
    utils::write.csv(data, con, row.names = FALSE)
    return(paste(textConnectionValue(con), collapse = "\n"))
  }
  if (identical(type, "application/json")) {
    return(as.character(jsonlite::toJSON(data, auto_unbox = TRUE, digits = NA, dataframe = "rows")))
  }
  .sm_abort("cannot serialize ", class(data)[1], " as ", content_type, ": pass a string or a raw vector")
}

.sm_deserialize <- function(body, content_type) {
  type <- tolower(trimws(sub(";.*$", "", content_type %||% "")))
  if (!type %in% c("text/csv", "application/json") && !startsWith(type, "text/")) {
    return(body)
  }
  text <- rawToChar(body)
  Encoding(text) <- "UTF-8"
  if (identical(type, "application/json")) {
    return(jsonlite::fromJSON(text, simplifyVector = TRUE))
  }
  if (!identical(type, "text/csv")) {
    return(text)
  }
  .sm_parse_csv(text)
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# CSV answers: one value per line -> a vector; several columns -> a data.frame (with the header row when
# the first row is names over data, as write.csv writes it).
.sm_parse_csv <- function(text) {
  if (!nzchar(trimws(text))) {
    return(character())
  }
  rows <- utils::read.csv(text = text, header = FALSE, colClasses = "character", na.strings = character(),
                          check.names = FALSE, strip.white = TRUE)
  numeric_like <- function(x) !is.na(suppressWarnings(as.numeric(x))) | x %in% c("NA", "")
  has_header <- nrow(rows) > 1 && !any(numeric_like(unlist(rows[1, ]))) &&
    any(vapply(rows[-1, , drop = FALSE], function(col) all(numeric_like(col)), logical(1)))
  if (has_header) {
    header <- unlist(rows[1, ])
    rows <- rows[-1, , drop = FALSE]
    names(rows) <- header
  }
  rows[] <- lapply(rows, function(col) utils::type.convert(col, as.is = TRUE))
  rownames(rows) <- NULL
  if (ncol(rows) == 1) {
    return(rows[[1]])
  }
  rows
}

#' Delete an endpoint
#'
#' Deletes the endpoint, its endpoint config and its model (local: the R server stops).
#' @param h An \code{sm_endpoint}.
#' @return \code{h}, invisibly.
#' @export
sm_delete <- function(h) {
  if (!inherits(h, "sm_endpoint")) {
    .sm_abort("sm_delete() deletes endpoints; stop a job with sm_stop()")
  }
  .sm_call(h$py$delete)
  invisible(h)
}

#' @export
format.sm_endpoint <- function(x, ...) {
  reticulate::py_to_r(.sm_call(x$py$summary))
}

#' @export
print.sm_endpoint <- function(x, ...) {
  cat(format(x), "\n", sep = "")
  invisible(x)
}

#' @export
as.character.sm_endpoint <- function(x, ...) {
  reticulate::py_to_r(x$py$endpoint_name)
}
