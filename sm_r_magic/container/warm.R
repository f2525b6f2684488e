# A warm R of the local backend (sm_r_magic/backends/warm_runner.py): started before there is a job, it waits
# here with the container's library loaded, then runs exactly what a cold start runs. Its runner hands it the
# job on stdin as one line of JSON,
#   {"set": {"NAME": "VALUE", ...}, "unset": ["NAME", ...], "cwd": "JOB FOLDER"}
# the differences between this R's environment and the one a cold start would have had (never a variable that
# only takes effect at R's start-up: the runner starts such jobs cold) and the folder a cold start runs in.
# The job's own code, the user's program and every file are read after this, as in a cold start.

.sm_wait_for_job <- function() {
  # What a cold start loads first thing while preparing the job (~80 ms): jsonlite for its configuration, and
  # parallel for training's SM_NUM_CPUS
  loadNamespace("jsonlite")
  if (identical(commandArgs(trailingOnly = TRUE)[1], "train")) loadNamespace("parallel")
  ready_file <- Sys.getenv("SM_R_MAGIC_WARM_READY")  # the runner's: R is waiting now
  if (nzchar(ready_file)) file.create(ready_file)
  stdin_con <- file("stdin")
  line <- readLines(stdin_con, n = 1L, warn = FALSE)
  close(stdin_con)
  if (!length(line) || !nzchar(line)) {
    message("[sm-r-magic] this warm R was never handed a job")
    quit(save = "no", status = 3)
  }
  job <- jsonlite::parse_json(line, simplifyVector = FALSE)
  unset <- unlist(job$unset)
  if (length(unset)) Sys.unsetenv(unset)
  if (length(job$set)) do.call(Sys.setenv, lapply(job$set, as.character))
  setwd(job$cwd)
  invisible(TRUE)
}
