# The job's R code from what the user gave: a string, a function (its body), a quoted expression, or a file.

#' The R code a job runs
#'
#' \code{code} may be
#' \itemize{
#'   \item a string (or a character vector of lines) of R code;
#'   \item a path to an existing \code{.R} file (one string ending in \code{.R}): the file's text;
#'   \item a function without arguments: its \emph{body} is the job's code, e.g.
#'         \code{sm_train(function() { fit <- lm(mpg ~ wt, mtcars); saveRDS(fit, file.path(sm_model_dir(), "model.rds")) })}.
#'         With source references (RStudio, \code{options(keep.source = TRUE)}) the body is taken verbatim,
#'         comments included; otherwise it is deparsed. The job runs in a fresh R process: variables of the
#'         calling session are not there (pass data through inputs/channels, settings as hyperparameters);
#'   \item a quoted expression, \code{quote({ ... })}.
#' }
#' @param code See above.
#' @param what Argument name used in error messages.
#' @param allow_null Whether NULL (no code) is acceptable.
#' @return One string, or NULL.
#' @keywords internal
.sm_code <- function(code, what = "code", allow_null = FALSE) {
  if (is.null(code)) {
    if (allow_null) {
      return(NULL)
    }
    .sm_abort(what, " is missing: give R code as a string, a function whose body is the code, or an .R file")
  }
  if (is.function(code)) {
    if (length(formals(code))) {
      .sm_abort(what, ": the function must take no arguments (its body is the job's code); pass values as ",
                "hyperparameters or env instead")
    }
    return(.sm_function_body(code))
  }
  if (is.language(code)) {
    return(.sm_expression_text(code))
  }
  if (is.character(code)) {
    if (anyNA(code)) {
      .sm_abort(what, " contains NA")
    }
    if (length(code) == 1 && !grepl("\n", code, fixed = TRUE) && grepl("\\.[Rr]$", trimws(code))) {
      path <- path.expand(trimws(code))
      if (!file.exists(path) || dir.exists(path)) {
        .sm_abort(what, ": the file ", path, " does not exist (a string ending in .R is read as a file path)")
      }
      return(paste(readLines(path, warn = FALSE, encoding = "UTF-8"), collapse = "\n"))
    }
    code <- paste(code, collapse = "\n")
    if (!allow_null && !nzchar(trimws(code))) {
      .sm_abort(what, " is empty: give the R code to run (a string, a function whose body is the code, or an .R ",
                "file)")
    }
    return(code)
  }
  .sm_abort(what, " must be R code as a string, a function, a quoted expression or an .R file path, not ",
            class(code)[1])
}

# The text of a function's body: verbatim from its source reference when there is one, else deparsed.
.sm_function_body <- function(fun) {
  b <- body(fun)
  text <- .sm_braced_source(b)
  if (is.null(text)) {
    text <- .sm_expression_text(b)
  }
  text
}

.sm_expression_text <- function(expr) {
  if (is.call(expr) && identical(expr[[1]], as.name("{"))) {
    text <- .sm_braced_source(expr)
    if (!is.null(text)) {
      return(text)
    }
    statements <- as.list(expr)[-1]
  } else {
    statements <- list(expr)
  }
  lines <- unlist(lapply(statements, function(e) deparse(e, width.cutoff = 100L, control = "useSource")))
  paste(lines, collapse = "\n")
}

# With keep.source, a braced body carries srcref (one per statement, the first for the "{" itself) and
# wholeSrcref (from the start of the file to the closing brace): the text between the braces is the code,
# comments and layout included. NULL when there is no source reference.
.sm_braced_source <- function(b) {
  if (!is.call(b) || !identical(b[[1]], as.name("{"))) {
    return(NULL)
  }
  refs <- attr(b, "srcref")
  whole <- attr(b, "wholeSrcref")
  if (is.null(refs) || is.null(whole) || !length(refs)) {
    return(NULL)
  }
  open <- refs[[1]]
  srcfile <- attr(open, "srcfile")
  if (is.null(srcfile)) {
    return(NULL)
  }
  # srcref: first line, first byte, last line, last byte, ...
  first_line <- open[3]
  first_byte <- open[4] + 1L
  last_line <- whole[3]
  last_byte <- whole[4] - 1L
  lines <- tryCatch(getSrcLines(srcfile, first_line, last_line), error = function(e) NULL)
  if (is.null(lines) || length(lines) != last_line - first_line + 1L) {
    return(NULL)
  }
  bytes_of <- function(line, from, to) {
    raw <- charToRaw(enc2utf8(line))
    to <- min(to, length(raw))
    if (to < from) "" else rawToChar(raw[from:to])
  }
  if (first_line == last_line) {
    lines <- trimws(bytes_of(lines, first_byte, last_byte))
  } else {
    n <- length(lines)
    lines[1] <- bytes_of(lines[1], first_byte, .Machine$integer.max)
    lines[n] <- bytes_of(lines[n], 1L, last_byte)
  }
  Encoding(lines) <- "UTF-8"
  lines[length(lines)] <- sub("[ \t]+$", "", lines[length(lines)])
  # drop blank first/last lines (after "{" and before "}") and the common indentation
  while (length(lines) && !nzchar(trimws(lines[1]))) lines <- lines[-1]
  while (length(lines) && !nzchar(trimws(lines[length(lines)]))) lines <- lines[-length(lines)]
  if (!length(lines)) {
    return("")
  }
  used <- lines[nzchar(trimws(lines))]
  indent <- min(nchar(used) - nchar(sub("^[ \t]+", "", used)))
  if (indent > 0) {
    lines <- ifelse(nzchar(trimws(lines)), substring(lines, indent + 1L), "")
  }
  paste(lines, collapse = "\n")
}
