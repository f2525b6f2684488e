# The shared R container's entrypoint: one image for processing, training and serving.
#   entrypoint.sh train    SageMaker training contract (hyperparameters.json, channels, /opt/ml/model)
#   entrypoint.sh process  processing: SAGEMAKER_SUBMIT_DIRECTORY + SAGEMAKER_PROGRAM, /opt/ml/processing
#   entrypoint.sh serve    GET /ping, POST /invocations (serve.R)
# The root is /opt/ml unless SM_R_MAGIC_ROOT says otherwise (the local backend's job folder).

.sm_container_dir <- local({
  file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)[1]
  dirname(normalizePath(sub("^--file=", "", file_arg)))
})
source(file.path(.sm_container_dir, "helpers.R"))
options(warn = 1, keep.source = TRUE)
# R's JIT would byte-compile each of our functions on first use: ~0.1 s of a job's start, for code that runs
# once. It is off while we prepare the job and back on (R's default level) for the user's code.
.sm_jit_level <- compiler::enableJIT(0)

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

# Run the user's program; on error write the message and a short traceback to failure_file
# (SageMaker shows its first 1024 characters as FailureReason/ExitMessage) and exit non-zero.
.sm_run_user <- function(program, code_dir, failure_file) {
  path <- file.path(code_dir, program)
  if (!file.exists(path)) {
    msg <- sprintf("program %s not found in the submitted code (%s)", program,
                   paste(list.files(code_dir), collapse = ", "))
    .sm_write_text(failure_file, msg)
    message("Error: ", msg)
    quit(save = "no", status = 2)
  }
  compiler::enableJIT(.sm_jit_level)
  old <- setwd(code_dir)
  on.exit(setwd(old))
  trace <- character()
  result <- tryCatch(
    withCallingHandlers(
      {
        source(path, local = globalenv(), keep.source = TRUE, echo = FALSE)
        NULL
      },
      error = function(e) trace <<- .sm_user_trace(sys.calls()),
      warning = function(w) {
        # A top-level warning's call is source()'s eval(ei, envir): say "Warning:" as R does at top level
        call <- conditionCall(w)
        if (!is.null(call) && identical(call[[1]], quote(eval))) {
          message("Warning: ", conditionMessage(w))
          invokeRestart("muffleWarning")
        }
      }
    ),
    error = function(e) e
  )
  if (inherits(result, "error")) {
    call <- conditionCall(result)
    # A top-level stop() reports source()'s own eval(ei, envir) as its call: not the user's.
    if (!is.null(call) && identical(call[[1]], quote(eval))) call <- NULL
    where <- if (!is.null(call)) paste0(" in ", paste(deparse(call, nlines = 1L), collapse = "")) else ""
    lines <- c(sprintf("Error%s: %s", where, conditionMessage(result)))
    if (length(trace)) lines <- c(lines, "Traceback (innermost last):", sprintf("  %d: %s", seq_along(trace), trace))
    .sm_write_text(failure_file, lines)
    message(paste(lines, collapse = "\n"))
    quit(save = "no", status = 1)
  }
  invisible(TRUE)
}

# Run the job's preparation; a failure there is the job's failure (exit 2), reported like an R error.
.sm_prepare_or_fail <- function(expr, failure_file) {
  prepared <- tryCatch({
    force(expr)
    TRUE
  }, error = function(e) e)
  if (inherits(prepared, "error")) {
    .sm_write_text(failure_file, paste("Error preparing the job:", conditionMessage(prepared)))
    message("Error preparing the job: ", conditionMessage(prepared))
    quit(save = "no", status = 2)
  }
  invisible(TRUE)
}

.sm_set_env <- function(values) {
  values <- values[!vapply(values, is.null, TRUE)]
  do.call(Sys.setenv, lapply(values, as.character))
}

.sm_json <- function(x) as.character(jsonlite::toJSON(x, auto_unbox = TRUE, null = "null", digits = NA))

# The training toolkit's SM_* environment (sagemaker-training-toolkit's environment.py / mapping.py).
.sm_training_env <- function(root, program, submit_dir) {
  config_dir <- file.path(root, "input", "config")
  channels <- .sm_read_json(file.path(config_dir, "inputdataconfig.json"))
  if (is.null(channels)) channels <- structure(list(), names = character())
  resource <- .sm_read_json(file.path(config_dir, "resourceconfig.json"))
  hosts <- if (is.null(resource$hosts)) list("algo-1") else resource$hosts
  current_host <- if (is.null(resource$current_host)) "algo-1" else resource$current_host
  hps <- sm_hyperparameters()
  if (!length(hps)) hps <- structure(list(), names = character())
  channel_dirs <- lapply(stats::setNames(names(channels), names(channels)),
                         function(ch) file.path(root, "input", "data", ch))
  env <- list(
    SM_MODEL_DIR = file.path(root, "model"),
    SM_CHANNELS = .sm_json(I(names(channels))),
    SM_HPS = .sm_json(hps),
    SM_OUTPUT_DIR = file.path(root, "output"),
    SM_OUTPUT_DATA_DIR = file.path(root, "output", "data"),
    SM_INPUT_DIR = file.path(root, "input"),
    SM_INPUT_CONFIG_DIR = config_dir,
    SM_INPUT_DATA_CONFIG = .sm_json(channels),
    SM_RESOURCE_CONFIG = .sm_json(resource),
    SM_HOSTS = .sm_json(I(unlist(hosts))),
    SM_CURRENT_HOST = current_host,
    SM_NUM_CPUS = parallel::detectCores(),
    SM_NUM_GPUS = 0L,
    SM_MODULE_DIR = if (is.null(submit_dir)) "" else submit_dir,
    SM_USER_ENTRY_POINT = program,
    SM_LOG_LEVEL = "20"
  )
  for (ch in names(channel_dirs)) env[[paste0("SM_CHANNEL_", toupper(ch))]] <- channel_dirs[[ch]]
  for (hp in names(hps)) {
    value <- hps[[hp]]
    env[[paste0("SM_HP_", toupper(hp))]] <- if (is.character(value) && length(value) == 1L) value else .sm_json(value)
  }
  env$SM_TRAINING_ENV <- .sm_json(list(
    channel_input_dirs = channel_dirs, current_host = current_host, hosts = I(unlist(hosts)),
    hyperparameters = hps, input_dir = env$SM_INPUT_DIR, input_config_dir = config_dir,
    input_data_config = channels, model_dir = env$SM_MODEL_DIR, module_dir = env$SM_MODULE_DIR,
    num_cpus = env$SM_NUM_CPUS, num_gpus = 0L, output_data_dir = env$SM_OUTPUT_DATA_DIR,
    output_dir = env$SM_OUTPUT_DIR, resource_config = resource, user_entry_point = program,
    job_name = Sys.getenv("TRAINING_JOB_NAME", "")
  ))
  env
}

.sm_train <- function() {
  root <- .sm_root()
  raw <- .sm_raw_hyperparameters()
  program <- .sm_decode_hp(if (is.null(raw$sagemaker_program)) "train.R" else raw$sagemaker_program)
  submit_dir <- if (is.null(raw$sagemaker_submit_directory)) NULL else .sm_decode_hp(raw$sagemaker_submit_directory)
  code_dir <- file.path(root, "code")
  failure_file <- file.path(root, "output", "failure")
  .sm_prepare_or_fail({
    .sm_stage_code(submit_dir, code_dir)
    .sm_set_env(.sm_training_env(root, program, submit_dir))
    for (dir in c("model", "output/data")) dir.create(file.path(root, dir), recursive = TRUE, showWarnings = FALSE)
    # The model artifact carries its code so that it can be served (model.tar.gz holds code/).
    dir.create(file.path(root, "model", "code"), recursive = TRUE, showWarnings = FALSE)
    file.copy(list.files(code_dir, full.names = TRUE, no.. = TRUE), file.path(root, "model", "code"), recursive = TRUE)
    .sm_install_job_packages(code_dir)
  }, failure_file)
  .sm_run_user(program, code_dir, failure_file)
}

.sm_process <- function(args) {
  root <- .sm_root()
  program <- Sys.getenv("SAGEMAKER_PROGRAM", "process.R")
  submit_dir <- Sys.getenv("SAGEMAKER_SUBMIT_DIRECTORY", file.path(root, "processing", "input", "code"))
  code_dir <- file.path(tempdir(), "code")
  failure_file <- file.path(root, "output", "message")
  .sm_prepare_or_fail({
    .sm_stage_code(submit_dir, code_dir)
    config <- .sm_processing_config()
    for (out in config$ProcessingOutputConfig$Outputs) {
      if (!is.null(out$S3Output$LocalPath)) dir.create(.sm_local_path(out$S3Output$LocalPath), recursive = TRUE,
                                                       showWarnings = FALSE)
    }
    .sm_install_job_packages(code_dir)
  }, failure_file)
  .sm_run_user(program, code_dir, failure_file)
}

.sm_main <- function(args) {
  mode <- if (length(args)) args[[1]] else "train"
  switch(mode,
    train = .sm_train(),
    process = .sm_process(args[-1]),
    serve = {
      source(file.path(.sm_container_dir, "serve.R"))
      sm_serve()
    },
    {
      message("unknown mode '", mode, "': use train, process or serve")
      quit(save = "no", status = 2)
    }
  )
  invisible(NULL)
}

.sm_main(commandArgs(trailingOnly = TRUE))
