# Settings: the RMagic traits of the Python package (the same ones %config RMagic.x sets in IPython).

#' Settings of sm-r-magic
#'
#' With arguments, sets them for this R session (they are the \code{RMagic} settings of the Python package:
#' \code{backend}, \code{instance_type}, \code{local_root}, \code{role}, \code{bucket}, \code{region},
#' \code{image}, \code{wait}, \code{progress}, ...); environment variables \code{SM_R_MAGIC_<NAME>} set the
#' defaults. The RStudio addins use these settings.
#'
#' @param ... Settings as \code{name = value}.
#' @return All settings as a named list (class \code{sm_config}), invisibly when setting.
#' @examples
#' \dontrun{
#' sm_config(backend = "sagemaker", instance_type = "ml.m5.xlarge")
#' sm_config()$backend
#' }
#' @export
sm_config <- function(...) {
  values <- list(...)
  api <- .sm_api()
  cfg <- .sm_call(api$config)
  if (length(values)) {
    if (is.null(names(values)) || any(!nzchar(names(values)))) {
      .sm_abort("sm_config() takes settings as name = value, e.g. sm_config(backend = \"local\")")
    }
    bad <- vapply(values, function(v) is.null(v) || length(v) != 1, logical(1))
    if (any(bad)) {
      .sm_abort("sm_config(): ", names(values)[bad][1], " must be one value")
    }
    settings <- .sm_call(.sm_bridge()$set_settings, cfg, reticulate::dict(values, convert = FALSE))
  } else {
    settings <- .sm_call(cfg$describe)
  }
  settings <- structure(reticulate::py_to_r(settings), class = "sm_config")
  if (length(values)) invisible(settings) else settings
}

#' @export
print.sm_config <- function(x, ...) {
  values <- unclass(x)
  width <- max(nchar(names(values)))
  for (name in names(values)) {
    value <- values[[name]]
    shown <- if (is.character(value)) encodeString(value, quote = "\"") else format(value)
    cat(formatC(name, width = -width), " ", shown, "\n", sep = "")
  }
  invisible(x)
}
