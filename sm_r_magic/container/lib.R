# The container's R library: what the entry scripts (entrypoint.R for train/process, serve.R for serve)
# share. Fetching code and data, staging sourcedir.tar.gz safely, per-job packages, logging, and the
# formatting of R errors and tracebacks. The entry script sets .sm_container_dir before sourcing this file.

.sm_log <- function(...) message("[sm-r-magic] ", ...)

.sm_write_text <- function(path, text) {
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  writeLines(text, path, useBytes = TRUE)
}

# Fetch a local path, file:// URI or s3:// URI into dest; returns the local path of what was fetched.
sm_fetch <- function(uri, dest) {
  dir.create(dest, recursive = TRUE, showWarnings = FALSE)
  if (startsWith(uri, "s3://")) {
    python <- Sys.getenv("SM_R_MAGIC_PYTHON", "python3")
    # R puts its own library folders on LD_LIBRARY_PATH; a Python with a shared libpython elsewhere
    # (pyenv, conda) would then load the wrong libpython, so Python runs without it.
    out <- suppressWarnings(system2("env", c("-u", "LD_LIBRARY_PATH", python,
                                             shQuote(file.path(.sm_container_dir, "fetch.py")), shQuote(uri),
                                             shQuote(dest)), stdout = TRUE, stderr = TRUE))
    status <- attr(out, "status")
    if (!is.null(status) && status != 0) stop(sprintf("could not download %s: %s", uri, paste(out, collapse = "\n")))
    return(if (length(out) == 1L) out else dest)
  }
  path <- .sm_local_path(sub("^file://", "", uri))
  if (!file.exists(path)) stop(sprintf("%s does not exist", uri))
  path
}

# Extract sourcedir.tar.gz into dest, refusing absolute paths and `..` members (tar-slip).
.sm_safe_untar <- function(tarball, dest) {
  members <- utils::untar(tarball, list = TRUE, tar = "internal")
  bad <- members[startsWith(members, "/") | grepl("(^|/)\\.\\.(/|$)", members)]
  if (length(bad)) stop(sprintf("%s has unsafe member(s): %s", basename(tarball), paste(bad, collapse = ", ")))
  dir.create(dest, recursive = TRUE, showWarnings = FALSE)
  utils::untar(tarball, exdir = dest, tar = "internal")
  invisible(members)
}

# Make the submitted code available in code_dir: a tarball is extracted, a folder copied.
.sm_stage_code <- function(submit_dir, code_dir) {
  if (is.null(submit_dir) || !nzchar(submit_dir)) return(invisible(code_dir))
  src <- sm_fetch(submit_dir, file.path(tempdir(), "submit"))
  if (dir.exists(src)) {
    tarballs <- list.files(src, pattern = "\\.tar\\.gz$", full.names = TRUE)
    if (length(tarballs) == 1L && length(list.files(src)) == 1L) src <- tarballs
  }
  if (dir.exists(src)) {
    dir.create(code_dir, recursive = TRUE, showWarnings = FALSE)
    file.copy(list.files(src, full.names = TRUE, all.files = TRUE, no.. = TRUE), code_dir, recursive = TRUE)
  } else {
    .sm_safe_untar(src, code_dir)
  }
  invisible(code_dir)
}

# Per-job R packages (--packages): installed by packages.R when present in the container.
.sm_install_job_packages <- function(code_dir) {
  installer <- file.path(.sm_container_dir, "packages.R")
  if (file.exists(installer)) {
    source(installer, local = TRUE)
    sm_install_job_packages(code_dir)
  }
}

.sm_format_call <- function(call, width = 100L) {
  text <- paste(trimws(deparse(call, width.cutoff = 100L)), collapse = " ")
  if (nchar(text) > width) text <- paste0(substr(text, 1L, width - 3L), "...")
  srcref <- attr(call, "srcref")
  if (!is.null(srcref)) {
    file <- basename(utils::getSrcFilename(srcref))
    if (length(file) && nzchar(file)) text <- sprintf("%s at %s#%d", text, file, srcref[[1]])
  }
  text
}

.sm_helper_names <- c("sm_hyperparameters", "sm_hp", "sm_channel", "sm_input", "sm_output", "sm_model_dir",
                      "sm_output_data_dir", "sm_checkpoint_dir")

# tryCatch()'s own machinery: noise in a user's traceback.
.sm_internal_frames <- c("tryCatchList", "tryCatchOne", "doTryCatch", "withCallingHandlers", ".handleSimpleError")

# The user's frames of the call stack at the time of the error, innermost last. `calls` is sys.calls()
# inside our calling handler: the frames after source()'s eval(), without the handler's own frames
# (.handleSimpleError(h, ...) then h(...) for stop("text"); the handler itself for stop(condition)).
.sm_user_trace <- function(calls) {
  calls <- calls[-length(calls)]  # the calling handler's own frame
  fn_name <- function(call) if (is.name(call[[1]])) as.character(call[[1]]) else ""
  names <- vapply(calls, fn_name, "")
  is_eval <- names == "eval"
  start <- if (any(is_eval)) max(which(is_eval)) + 1L else 1L
  handler <- which(names == ".handleSimpleError")
  handler <- handler[handler >= start]
  end <- if (length(handler)) min(handler) - 1L else length(calls)
  if (end < start) return(character())
  keep <- seq.int(start, end)
  keep <- keep[!names[keep] %in% .sm_internal_frames]
  # Inside our helpers (sm_output(), sm_hp(), ...) only the call the user wrote matters
  helper <- keep[names[keep] %in% .sm_helper_names]
  if (length(helper)) keep <- keep[keep <= min(helper)]
  vapply(calls[keep], .sm_format_call, "")
}

.sm_set_env <- function(values) {
  values <- values[!vapply(values, is.null, TRUE)]
  do.call(Sys.setenv, lapply(values, as.character))
}

.sm_json <- function(x) as.character(jsonlite::toJSON(x, auto_unbox = TRUE, null = "null", digits = NA))

# "Error in f(x): message" plus the user's traceback (innermost last); `what` names where it happened
# ("in model_fn", "preparing the job", ...). A top-level stop() reports source()'s own eval(ei, envir) as
# its call: not the user's, so it is left out.
.sm_error_lines <- function(e, trace = character(), what = NULL) {
  call <- conditionCall(e)
  if (!is.null(call) && identical(call[[1]], quote(eval))) call <- NULL
  where <- if (!is.null(call)) paste0(" in ", paste(deparse(call, nlines = 1L), collapse = "")) else ""
  lines <- sprintf("Error%s%s: %s", if (is.null(what)) "" else paste0(" ", what), where, conditionMessage(e))
  if (length(trace)) lines <- c(lines, "Traceback (innermost last):", sprintf("  %d: %s", seq_along(trace), trace))
  lines
}
