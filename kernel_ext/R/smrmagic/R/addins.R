# RStudio addins (inst/rstudio/addins.dcf): run the editor's selection as a job with the sm_config() settings.
# rstudioapi is reached through .sm_rstudio(), which tests replace with stubs (RStudio does not run there):
# options(smrmagic.rstudioapi = list(getSourceEditorContext = function() ..., isAvailable = function() TRUE)).

.sm_rstudio <- function(fun) {
  stubs <- getOption("smrmagic.rstudioapi")
  if (!is.null(stubs[[fun]])) {
    return(stubs[[fun]])
  }
  if (!requireNamespace("rstudioapi", quietly = TRUE)) {
    .sm_abort("the RStudio addins need the rstudioapi package (install.packages(\"rstudioapi\"))")
  }
  getExportedValue("rstudioapi", fun)
}

# The selected text of the active source editor (every selection, in order), or the whole document.
.sm_addin_context <- function() {
  if (!isTRUE(.sm_rstudio("isAvailable")())) {
    .sm_abort("the smrmagic addins run inside RStudio; elsewhere call sm_processing(), sm_train() or sm_deploy()")
  }
  context <- .sm_rstudio("getSourceEditorContext")()
  if (is.null(context)) {
    .sm_abort("no R script is open in the source editor")
  }
  selected <- vapply(context$selection, function(s) paste(s$text, collapse = "\n"), character(1))
  selected <- selected[nzchar(trimws(selected))]
  code <- if (length(selected)) paste(selected, collapse = "\n") else paste(context$contents, collapse = "\n")
  if (!nzchar(trimws(code))) {
    .sm_abort("nothing to run: the script is empty")
  }
  list(code = code, name = .sm_addin_name(context$path))
}

# A job base name from the script's file name (analysis_v2.R -> analysis-v2); NULL for unsaved scripts.
.sm_addin_name <- function(path) {
  if (is.null(path) || !nzchar(path)) {
    return(NULL)
  }
  base <- tolower(tools::file_path_sans_ext(basename(path)))
  base <- gsub("[^a-z0-9]+", "-", base)
  base <- substr(gsub("^-+|-+$", "", base), 1, 40)
  base <- gsub("-+$", "", base)
  if (nzchar(base)) base else NULL
}

.sm_addin_run <- function(run) {
  target <- .sm_addin_context()
  handle <- tryCatch(run(target$code, target$name), sm_job_failed = function(e) {
    message(conditionMessage(e))
    message("The failed job's handle: smrmagic::sm_last() (sm_logs(sm_last()) for the whole log)")
    NULL
  })
  if (!is.null(handle)) {
    print(handle)
    message("Handle: smrmagic::sm_last()")
  }
  invisible(handle)
}

#' RStudio addin: run the selection as a processing job
#'
#' Runs the selected code (the whole script if nothing is selected) with \code{sm_processing()} and the
#' \code{sm_config()} settings; the job is named after the script. The handle is \code{sm_last()}.
#' @return The job handle, invisibly (NULL if it failed).
#' @export
sm_addin_processing <- function() {
  .sm_addin_run(function(code, name) sm_processing(code, name = name))
}

#' RStudio addin: run the selection as a training job
#'
#' Like \code{sm_addin_processing()}, with \code{sm_train()}.
#' @return The job handle, invisibly (NULL if it failed).
#' @export
sm_addin_train <- function() {
  .sm_addin_run(function(code, name) sm_train(code, name = name))
}

#' RStudio addin: deploy the latest training job with the selection as inference code
#'
#' The selection defines \code{model_fn} (and optionally \code{input_fn}, \code{predict_fn}, \code{output_fn});
#' the model is this session's latest training job.
#' @return The endpoint handle, invisibly (NULL if it failed).
#' @export
sm_addin_deploy <- function() {
  .sm_addin_run(function(code, name) sm_deploy(code, name = name))
}
