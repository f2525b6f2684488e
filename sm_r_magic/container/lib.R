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

# --- safe extraction of model.tar.gz and sourcedir.tar.gz -------------------------------------------------
# utils::untar(tar = "internal") refuses `..` in names but follows symbolic links already extracted, makes hard
# links to any path a header names, and skips devices and FIFOs. untar(list = TRUE) gives names only, so the
# check reads the tar headers itself, the way untar's internal reader does (ustar prefix, GNU long names, pax
# path/linkpath/size), and refuses the archive before anything is written. sm_r_magic/archives.py applies
# the same rules in Python.

.sm_tar_text <- function(bytes) {
  used <- which(bytes > 0)
  if (length(used)) rawToChar(bytes[seq_len(max(used))]) else ""
}

.sm_tar_octal <- function(bytes) {
  value <- 0
  for (byte in as.integer(bytes)) {
    if (byte == 0L) break
    if (byte == 32L) next
    if (byte < 48L || byte > 55L) stop("a tar header holds an invalid number")
    value <- 8 * value + (byte - 48L)
  }
  value
}

# One 512-byte header: name (with the ustar prefix), type flag, link target and data size.
.sm_tar_header <- function(block) {
  name <- .sm_tar_text(block[1:100])
  if (rawToChar(block[258:262]) == "ustar" && block[346L] > 0) name <- file.path(.sm_tar_text(block[346:500]), name)
  type <- block[157L]
  list(name = name, type = type, ctype = rawToChar(type), link = .sm_tar_text(block[158:257]),
       size = .sm_tar_octal(block[125:136]))
}

# The path=, linkpath= and size= records of a pax extended header, matched as untar's reader matches them.
.sm_tar_pax <- function(data) {
  records <- strsplit(rawToChar(data), "\n", fixed = TRUE)[[1]]
  pick <- function(key) {
    found <- sub(sprintf("[0-9]* %s=", key), "", grep(sprintf("[0-9]* %s=", key), records, value = TRUE, useBytes = TRUE),
                 useBytes = TRUE)
    if (length(found) > 1L) stop(sprintf("a pax header repeats %s", key))
    if (length(found)) found else NULL
  }
  size <- pick("size")
  list(name = pick("path"), link = pick("linkpath"), size = if (!is.null(size)) as.integer(size))
}

# A member's data, read past in chunks (seek() on a gzfile connection loses its place).
.sm_tar_skip <- function(con, size) {
  left <- 512 * ceiling(size / 512)
  while (left > 0) {
    got <- length(readBin(con, "raw", n = min(left, 4194304)))
    if (!got) stop("the archive ends in the middle of a member")
    left <- left - got
  }
}

.sm_tar_kind <- function(header) {
  if (header$ctype == "0") return("file")  # untar's reader extracts no other regular type (NUL, '7')
  switch(header$ctype, "1" = "hardlink", "2" = "symlink", "3" = "chardev", "4" = "blockdev", "5" = "dir",
         "6" = "fifo", sprintf("type '%s'", if (nzchar(header$ctype)) header$ctype else "NUL"))
}

# data.frame(name, kind, link) of an archive's members, as utils::untar(tar = "internal") extracts them.
.sm_tar_members <- function(tarball) {
  con <- gzfile(path.expand(tarball), "rb")
  on.exit(close(con))
  found <- list()
  long <- list()  # GNU long name/link (L, K) and pax values (x) waiting for the member they describe
  repeat {
    block <- readBin(con, "raw", n = 512L)
    if (!length(block) || all(block == 0)) break
    if (length(block) < 512L) stop("the archive ends in the middle of a tar block")
    h <- .sm_tar_header(block)
    if (h$ctype %in% c("L", "K", "x", "g")) {
      data <- readBin(con, "raw", n = 512L * ceiling(h$size / 512))
      if (h$ctype == "L") long$name <- .sm_tar_text(data)
      if (h$ctype == "K") long$link <- .sm_tar_text(data)
      if (h$ctype == "x") long <- utils::modifyList(long, .sm_tar_pax(data))
      next
    }
    kind <- .sm_tar_kind(h)
    if (kind %in% c("file", "hardlink", "symlink")) {  # untar's reader applies long names to these only
      if (!is.null(long$name)) h$name <- long$name
      if (kind != "file" && !is.null(long$link)) h$link <- long$link
      if (kind == "file" && !is.null(long$size)) h$size <- long$size
      long[intersect(names(long), c("name", if (kind == "file") "size" else "link"))] <- NULL
    }
    found[[length(found) + 1L]] <- c(h$name, kind, h$link)
    if (kind == "file") .sm_tar_skip(con, h$size)
  }
  column <- function(i) vapply(found, function(member) member[[i]], "")
  data.frame(name = column(1L), kind = column(2L), link = column(3L), stringsAsFactors = FALSE)
}

.sm_path_parts <- function(path) {
  parts <- strsplit(path, "/", fixed = TRUE)[[1]]
  parts[nzchar(parts) & parts != "."]
}

# Where a symbolic link at `parts` pointing at `target` leads: NULL when it stays in the folder without
# passing through another symbolic link of the archive, else why not.
.sm_symlink_problem <- function(name, parts, target, symlinks) {
  if (startsWith(target, "/")) return(sprintf("'%s' is a symbolic link to the absolute path '%s'", name, target))
  where <- parts[-length(parts)]
  steps <- .sm_path_parts(target)
  for (i in seq_along(steps)) {
    if (steps[[i]] == "..") {
      if (!length(where)) return(sprintf("'%s' is a symbolic link leading out of the folder ('%s')", name, target))
      where <- where[-length(where)]
      next
    }
    where <- c(where, steps[[i]])
    if (i < length(steps) && paste(where, collapse = "/") %in% symlinks) {
      return(sprintf("'%s' is a symbolic link whose target '%s' passes through the symbolic link '%s'", name, target,
                     paste(where, collapse = "/")))
    }
  }
  NULL
}

.sm_member_problem <- function(name, kind, link, symlinks) {
  parts <- .sm_path_parts(name)
  if (startsWith(name, "/")) return(sprintf("'%s' is an absolute path", name))
  if (".." %in% parts) return(sprintf("'%s' leads out of the folder through '..'", name))
  prefixes <- vapply(seq_len(max(0L, length(parts) - 1L)), function(n) paste(parts[seq_len(n)], collapse = "/"), "")
  through <- prefixes[prefixes %in% symlinks]
  if (length(through)) return(sprintf("'%s' lies under the symbolic link '%s'", name, through[[1]]))
  switch(kind,
    file = , dir = NULL,
    hardlink = sprintf("'%s' is a hard link (to '%s')", name, link),
    chardev = sprintf("'%s' is a character device", name),
    blockdev = sprintf("'%s' is a block device", name),
    fifo = sprintf("'%s' is a FIFO (named pipe)", name),
    symlink = .sm_symlink_problem(name, parts, link, symlinks),
    sprintf("'%s' is of a %s, which R does not extract", name, kind)
  )
}

# The first unsafe member of .sm_tar_members(), as a phrase naming it, or NULL.
.sm_tar_problem <- function(members) {
  symlinks <- vapply(members$name[members$kind == "symlink"], function(n) paste(.sm_path_parts(n), collapse = "/"), "")
  for (i in seq_len(nrow(members))) {
    problem <- .sm_member_problem(members$name[[i]], members$kind[[i]], members$link[[i]], symlinks)
    if (!is.null(problem)) return(problem)
  }
  NULL
}

# Extract model.tar.gz or sourcedir.tar.gz into dest, or fail naming the first unsafe member (nothing is
# written then): absolute or `..` names, hard links, devices, FIFOs, symbolic links out of dest, and anything
# that passes through a symbolic link of the archive.
.sm_safe_untar <- function(tarball, dest) {
  members <- tryCatch(.sm_tar_members(tarball), error = function(e) {
    stop(sprintf("%s is not a readable tar archive (%s)", basename(tarball), conditionMessage(e)), call. = FALSE)
  })
  problem <- .sm_tar_problem(members)
  if (!is.null(problem)) stop(sprintf("%s has an unsafe member: %s", basename(tarball), problem), call. = FALSE)
  dir.create(dest, recursive = TRUE, showWarnings = FALSE)
  utils::untar(tarball, exdir = dest, tar = "internal")
  invisible(members$name)
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

# R's own machinery, noise in a user's traceback: tryCatch()'s, the error handler's, and the frames that turn a
# warning into an error under options(warn = 2).
.sm_internal_frames <- c("tryCatchList", "tryCatchOne", "doTryCatch", "withCallingHandlers", ".handleSimpleError",
                         ".signalSimpleWarning", "withRestarts", "withOneRestart", "doWithOneRestart")

.sm_bare <- function(call) {
  attributes(call) <- NULL
  call
}

.sm_call_name <- function(call) if (is.name(call[[1]])) as.character(call[[1]]) else ""

# source() evaluates each top-level expression as withVisible(eval(ei, envir)): its frames, not the user's. An
# error or warning raised by a top-level expression itself (stop("x"), as.integer("a")) names eval(ei, envir) as
# its call.
.sm_is_source_eval <- function(call) {
  !is.null(call) && (identical(.sm_bare(call), quote(eval(ei, envir))) ||
                     identical(.sm_bare(call), quote(withVisible(eval(ei, envir)))))
}

# "x <- f(1) at train.R#3": the code a srcref points at, with its line.
.sm_srcref_line <- function(srcref) {
  if (is.null(srcref)) return(character())
  text <- paste(trimws(as.character(srcref)), collapse = " ")
  if (nchar(text) > 100L) text <- paste0(substr(text, 1L, 97L), "...")
  sprintf("%s at %s#%d", text, basename(utils::getSrcFilename(srcref)), srcref[[1]])
}

# The top-level expression that the source() call in frame `frame` is evaluating.
.sm_source_statement <- function(frame) {
  env <- sys.frame(frame)
  .sm_srcref_line(tryCatch(get("srcrefs", envir = env, inherits = FALSE)[[get("i", envir = env, inherits = FALSE)]],
                           error = function(e) NULL))
}

# Whether frame i runs the user's code: a function the user defined, or a call the user wrote (its srcref).
.sm_user_frame <- function(i, calls) {
  !is.null(attr(calls[[i]], "srcref")) || !is.null(attr(sys.function(i), "srcref"))
}

# When an error arises inside package code (lm()'s model.frame() cannot find a column), R names the package's
# call (eval(predvars, data, env)); the user needs the innermost call they wrote, with its line.
.sm_error_where <- function(cond, calls, keep) {
  call <- conditionCall(cond)
  if (is.null(call) || .sm_is_source_eval(call) || !length(keep)) return(NULL)
  raised <- which(vapply(calls, function(cl) identical(.sm_bare(cl), .sm_bare(call)), TRUE))
  # no frame for a primitive such as sqrt(): it ran in the innermost frame
  frame <- if (length(raised)) max(raised) else max(keep)
  if (.sm_user_frame(frame, calls)) return(NULL)
  written <- keep[vapply(calls[keep], function(cl) !is.null(attr(cl, "srcref")), TRUE)]
  if (length(written)) .sm_format_call(calls[[max(written)]]) else NULL
}

# The user's frames of the call stack at the time of an error, innermost last, as lines (attribute "where":
# see .sm_error_where). `calls` is sys.calls() inside our calling handler, whose own frames are left out
# (.handleSimpleError(h, ...) then h(...) for stop("text"); the handler itself for stop(condition)). The user's
# code starts inside .sm_source_user(). When it holds no frame after the innermost source() (an error in a
# top-level expression, of train.R or of a file it sources), that expression is shown with its line; when a
# primitive (sqrt("a"), or a warning under options(warn = 2)) failed inside a user's function, the line R was
# running there (the srcref of R's signalling frame).
.sm_user_trace <- function(calls, cond = NULL) {
  n <- length(calls) - 1L
  names <- vapply(calls, .sm_call_name, "")
  if (n >= 1L && names[[n]] == ".handleSimpleError") n <- n - 1L
  marker <- match(".sm_source_user", names)
  start <- if (is.na(marker)) 1L else marker + 2L  # after .sm_source_user() and its source()
  keep <- if (n >= start) seq.int(start, n) else integer()
  signalled <- c(keep[names[keep] == ".signalSimpleWarning"], n + 1L)[[1]]
  keep <- keep[!names[keep] %in% .sm_internal_frames & !vapply(calls[keep], .sm_is_source_eval, TRUE)]
  # Inside our helpers (sm_output(), sm_hp(), ...) only the call the user wrote matters
  helper <- keep[names[keep] %in% .sm_helper_names]
  if (length(helper)) keep <- keep[keep <= min(helper)]
  trace <- vapply(calls[keep], .sm_format_call, "")
  sources <- c(if (!is.na(marker)) marker + 1L, keep[names[keep] == "source"])
  if (length(sources) && !any(keep > max(sources))) {
    trace <- c(trace, .sm_source_statement(max(sources)))
  } else if (!length(helper) && length(keep) && !is.null(attr(sys.function(max(keep)), "srcref"))) {
    trace <- c(trace, .sm_srcref_line(attr(calls[[signalled]], "srcref")))
  }
  structure(trace, where = if (!is.null(cond)) .sm_error_where(cond, calls, keep))
}

.sm_set_env <- function(values) {
  values <- values[!vapply(values, is.null, TRUE)]
  do.call(Sys.setenv, lapply(values, as.character))
}

.sm_json <- function(x) as.character(jsonlite::toJSON(x, auto_unbox = TRUE, null = "null", digits = NA))

# "Error in f(x): message" plus the user's traceback (innermost last); `what` names where it happened
# ("in model_fn", "preparing the job", ...). A top-level stop() reports source()'s own eval(ei, envir) as
# its call: not the user's, so it is left out. A trace with a "where" attribute (.sm_user_trace) names that
# call instead of R's. Long traces keep their outer and inner ends.
.sm_error_lines <- function(e, trace = character(), what = NULL) {
  call <- conditionCall(e)
  if (.sm_is_source_eval(call)) call <- NULL
  where <- if (!is.null(attr(trace, "where"))) paste0(" in ", attr(trace, "where"))
           else if (!is.null(call)) paste0(" in ", paste(deparse(call, nlines = 1L), collapse = "")) else ""
  lines <- sprintf("Error%s%s: %s", if (is.null(what)) "" else paste0(" ", what), where, conditionMessage(e))
  if (!length(trace)) return(lines)
  shown <- sprintf("  %d: %s", seq_along(trace), trace)
  if (length(shown) > 20L) shown <- c(shown[1:6], sprintf("  ... %d frames ...", length(shown) - 16L), tail(shown, 10L))
  c(lines, "Traceback (innermost last):", shown)
}
