# The model registry: versions a pipeline registered (sm_models), their approval (sm_approve); a version is
# deployed with sm_deploy(model_package = "group[/version]").

#' Versions of a model package group, newest first
#'
#' The versions a pipeline's \code{register} step added (local and docker: the local registry under the local
#' root; sagemaker: SageMaker's model registry).
#' @param group The model package group (what \code{sm_pipeline(register = )} named).
#' @param backend The backend whose registry to read (default \code{sm_config()$backend}; local and docker
#'   share one).
#' @return A data.frame, newest version first: \code{package} (\code{"group/N"}, what \code{sm_approve()} and
#'   \code{sm_deploy(model_package = )} take), \code{version}, \code{approval} (PendingManualApproval,
#'   Approved, Rejected), \code{created}, \code{execution} (the pipeline execution that registered it),
#'   \code{model_data}, then one column per number of the evaluation report the condition read (e.g.
#'   \code{regression_metrics.rmse.value}).
#' @examples
#' \dontrun{
#' sm_models("mtcars-models")
#' }
#' @export
sm_models <- function(group, backend = NULL) {
  if (missing(group)) {
    .sm_abort("group is missing: name the model package group, e.g. sm_models(\"mtcars-models\")")
  }
  group <- .sm_string(group, "group")
  api <- .sm_api()
  packages <- .sm_call(api$model_packages, group, backend = .sm_string(backend, "backend"))
  .sm_model_table(group, packages)
}

#' Approve (or reject) a registered model version
#'
#' \code{sm_deploy(model_package = "group")} deploys the newest Approved version of a group.
#' @param package The version: \code{"group/N"} (the \code{package} column of \code{sm_models()}).
#' @param reject Reject it instead.
#' @param backend The backend whose registry holds it (default \code{sm_config()$backend}).
#' @return The version's row as \code{sm_models()} shows it, invisibly; prints \code{"group/N: Approved"}.
#' @examples
#' \dontrun{
#' sm_approve("mtcars-models/2")
#' sm_approve("mtcars-models/1", reject = TRUE)
#' }
#' @export
sm_approve <- function(package, reject = FALSE, backend = NULL) {
  if (missing(package)) {
    .sm_abort("package is missing: name the version to approve, e.g. sm_approve(\"mtcars-models/2\")")
  }
  package <- .sm_string(package, "package")
  api <- .sm_api()
  answer <- .sm_call(api$approve, package, reject = .sm_flag(reject, "reject"),
                     backend = .sm_string(backend, "backend"))
  group <- reticulate::py_to_r(reticulate::py_get_item(answer, "ModelPackageGroupName"))
  row <- .sm_model_table(group, reticulate::r_to_py(list(answer)))
  cat(row$package, ": ", row$approval, "\n", sep = "")
  invisible(row)
}

.sm_model_table <- function(group, packages) {
  found <- reticulate::py_to_r(.sm_call(.sm_bridge()$model_table, group, packages))
  rows <- found$columns
  table <- data.frame(package = .sm_column(rows$package), version = .sm_column(rows$version, integer(1)),
                      approval = .sm_column(rows$approval), created = .sm_time(rows$created),
                      execution = .sm_column(rows$execution), model_data = .sm_column(rows$model_data),
                      stringsAsFactors = FALSE)
  for (metric in names(found$metrics)) {
    table[[metric]] <- .sm_column(found$metrics[[metric]], numeric(1))
  }
  table <- table[order(table$version, decreasing = TRUE), , drop = FALSE]
  rownames(table) <- NULL
  table
}
