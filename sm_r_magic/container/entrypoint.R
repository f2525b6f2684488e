# The shared R container's entrypoint: one image for processing, training and serving.
#   entrypoint.sh train    SageMaker training contract (hyperparameters.json, channels, /opt/ml/model)
#   entrypoint.sh process  processing: SAGEMAKER_SUBMIT_DIRECTORY + SAGEMAKER_PROGRAM, /opt/ml/processing
#   entrypoint.sh serve    GET /ping, POST /invocations (serve.R)
# The root is /opt/ml unless SM_R_MAGIC_ROOT says otherwise (the local backend's job folder).

.sm_container_dir <- local({
  file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)[1]
  dirname(normalizePath(sub("^--file=", "", file_arg)))
})
source(file.path(.sm_container_dir, "lib.R"))
source(file.path(.sm_container_dir, "helpers.R"))
options(warn = 1, keep.source = TRUE)
# R's JIT would byte-compile each of our functions on first use: ~0.1 s of a job's start, for code that runs
# once. It is off while we prepare the job and back on (R's default level) for the user's code.
.sm_jit_level <- compiler::enableJIT(0)

# The user's program, sourced into the global environment. The error handler finds the user's frames by this
# function's name (.sm_user_trace).
.sm_source_user <- function(path) source(path, local = globalenv(), keep.source = TRUE, echo = FALSE)

# A warning of a top-level expression names source()'s eval(ei, envir) as its call: say "Warning:" as R does
# at top level. Under options(warn = 2) R turns it into an error (after the calling handlers, so it must not be
# muffled here); options(warn = -1) silences it.
.sm_top_level_warning <- function(w) {
  if (!.sm_is_source_eval(conditionCall(w))) return(invisible())
  warn <- getOption("warn", 0)
  if (warn >= 2) return(invisible())
  if (warn >= 0) message("Warning: ", conditionMessage(w))
  invokeRestart("muffleWarning")
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
        .sm_source_user(path)
        NULL
      },
      error = function(e) trace <<- .sm_user_trace(sys.calls(), e),
      warning = .sm_top_level_warning
    ),
    error = function(e) e
  )
  if (inherits(result, "error")) {
    lines <- .sm_error_lines(result, trace)
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

# A warm local runner starts R before it has a job (warm.R): R waits here, then runs what a cold start runs.
if (nzchar(Sys.getenv("SM_R_MAGIC_WARM"))) local({
  source(file.path(.sm_container_dir, "warm.R"), local = TRUE)
  .sm_wait_for_job()
})
.sm_main(commandArgs(trailingOnly = TRUE))
