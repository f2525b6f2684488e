# User-facing helpers available inside every job (and locally).
# Portable code uses these instead of hard-coded /opt/ml paths: the local backend's root is a job folder.

.sm_reserved_hps <- c("sagemaker_program", "sagemaker_submit_directory", "sagemaker_container_log_level",
                      "sagemaker_job_name", "sagemaker_region", "sagemaker_r_packages")

.sm_root <- function() Sys.getenv("SM_R_MAGIC_ROOT", "/opt/ml")

# Paths in requests and config files say /opt/ml; the local backend runs under another root.
.sm_local_path <- function(path) {
  root <- .sm_root()
  if (root != "/opt/ml" && startsWith(path, "/opt/ml")) paste0(root, substring(path, 8)) else path
}

.sm_read_json <- function(path) {
  if (!file.exists(path)) return(NULL)
  jsonlite::read_json(path, simplifyVector = FALSE)
}

# Values may be JSON-encoded strings (the Python SDK sends them so since 2.110): decode each,
# falling back to the raw string. parse_json, not fromJSON: fromJSON reads files and URLs.
.sm_decode_hp <- function(value) {
  if (!is.character(value) || length(value) != 1L) return(value)
  decoded <- tryCatch(list(jsonlite::parse_json(value, simplifyVector = TRUE)), error = function(e) NULL)
  if (is.null(decoded) || is.null(decoded[[1]])) value else decoded[[1]]
}

.sm_raw_hyperparameters <- function() {
  hp <- .sm_read_json(file.path(.sm_root(), "input", "config", "hyperparameters.json"))
  if (is.null(hp)) list() else hp
}

sm_hyperparameters <- function() {
  hp <- lapply(.sm_raw_hyperparameters(), .sm_decode_hp)
  hp[setdiff(names(hp), .sm_reserved_hps)]
}

sm_hp <- function(name, default) {
  hp <- sm_hyperparameters()
  if (!name %in% names(hp)) {
    if (missing(default)) {
      stop(sprintf("hyperparameter '%s' is not set: pass --hp %s=VALUE or give sm_hp() a default", name, name),
           call. = FALSE)
    }
    return(default)
  }
  value <- hp[[name]]
  if (missing(default) || is.null(default) || !is.atomic(value)) return(value)
  # Typed like the default: "3" with default 1L gives 3L; a value that does not convert is an error.
  convert <- switch(typeof(default), integer = as.integer, double = as.numeric, logical = as.logical,
                    character = as.character, identity)
  converted <- suppressWarnings(convert(value))
  # NaN from "NaN" is a number, not a failed conversion
  if (any(is.na(converted) & !is.nan(converted)) && !anyNA(value)) {
    stop(sprintf("hyperparameter '%s' = '%s' is not a valid %s", name, paste(value, collapse = ","), typeof(default)),
         call. = FALSE)
  }
  converted
}

.sm_channel_names <- function() {
  channels <- .sm_read_json(file.path(.sm_root(), "input", "config", "inputdataconfig.json"))
  names(channels)
}

sm_channel <- function(name) {
  path <- Sys.getenv(paste0("SM_CHANNEL_", toupper(name)), file.path(.sm_root(), "input", "data", name))
  if (!dir.exists(path)) {
    known <- .sm_channel_names()
    stop(sprintf("channel '%s' was not given: pass --channel %s=URI (channels of this job: %s)", name, name,
                 if (length(known)) paste(known, collapse = ", ") else "none"), call. = FALSE)
  }
  path
}

.sm_processing_config <- function() {
  .sm_read_json(file.path(.sm_root(), "config", "processingjobconfig.json"))
}

.sm_processing_path <- function(name, kind) {
  config <- .sm_processing_config()
  entries <- if (kind == "input") config$ProcessingInputs else config$ProcessingOutputConfig$Outputs
  key <- if (kind == "input") "InputName" else "OutputName"
  for (entry in entries) {
    if (identical(entry[[key]], name)) {
      local <- if (kind == "input") entry$S3Input$LocalPath else entry$S3Output$LocalPath
      if (!is.null(local)) return(.sm_local_path(local))
    }
  }
  if (!is.null(config)) {
    known <- vapply(entries, function(e) e[[key]], "")
    known <- setdiff(known, "code")
    flag <- if (kind == "input") "--input %s=URI" else "--output %s"
    stop(sprintf("%s '%s' was not given: pass %s (%ss of this job: %s)", kind, name, sprintf(flag, name), kind,
                 if (length(known)) paste(known, collapse = ", ") else "none"), call. = FALSE)
  }
  file.path(.sm_root(), "processing", kind, name)
}

sm_input <- function(name) .sm_processing_path(name, "input")

sm_output <- function(name) {
  path <- .sm_processing_path(name, "output")
  dir.create(path, recursive = TRUE, showWarnings = FALSE)
  path
}

sm_model_dir <- function() {
  path <- Sys.getenv("SM_MODEL_DIR", file.path(.sm_root(), "model"))
  dir.create(path, recursive = TRUE, showWarnings = FALSE)
  path
}

# Files here survive a spot interruption: SageMaker syncs the folder with --checkpoint-uri (locally it is in the
# job folder). Write checkpoints here and look for one at the start of training.
sm_checkpoint_dir <- function() {
  path <- file.path(.sm_root(), "checkpoints")
  dir.create(path, recursive = TRUE, showWarnings = FALSE)
  path
}

sm_output_data_dir <- function() {
  path <- Sys.getenv("SM_OUTPUT_DATA_DIR", file.path(.sm_root(), "output", "data"))
  dir.create(path, recursive = TRUE, showWarnings = FALSE)
  path
}

# -- pipelines: the evaluation report a condition reads, and a model given as a processing input ------------

# Write `x` as JSON (digits = NA: 15 significant digits, not 4) to `file` in the processing output
# `output`: the report a pipeline condition reads (STEP.OUTPUT/FILE:JSON.PATH). Returns the file's path.
sm_report <- function(x, output, file = "evaluation.json") {
  path <- file.path(sm_output(output), file)
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  json <- jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE)
  writeLines(json, path, useBytes = TRUE)
  invisible(path)
}

# The folder holding the extracted model.tar.gz given as processing input `name` (--input model={fit.model_data}).
# It is extracted once, safely, into a folder beside the tarball; later calls return the same folder.
sm_model_input <- function(name) {
  input <- sm_input(name)
  tarballs <- if (dir.exists(input)) list.files(input, pattern = "\\.tar\\.gz$", full.names = TRUE) else input
  if (length(tarballs) != 1L || !file.exists(tarballs)) {
    stop(sprintf("input '%s' holds %s: pass one model.tar.gz, e.g. --input %s={fit.model_data}", name,
                 if (length(tarballs)) paste(basename(tarballs), collapse = ", ") else "no .tar.gz file", name),
         call. = FALSE)
  }
  dest <- sub("\\.tar\\.gz$", "", tarballs)
  done <- file.path(dest, ".sm-extracted")
  if (!file.exists(done)) {
    .sm_safe_untar(tarballs, dest)
    file.create(done)
  }
  dest
}
