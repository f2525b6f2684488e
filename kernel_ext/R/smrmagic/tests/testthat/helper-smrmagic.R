# Shared set-up: the local backend in a temporary root (never ~/.sm-r-magic), Python from SM_R_MAGIC_PYTHON.
# Python starts once per R process, so the root is set before the first call and again through sm_config().

if (!nzchar(Sys.getenv("SM_R_MAGIC_LOCAL_ROOT"))) {
  Sys.setenv(SM_R_MAGIC_LOCAL_ROOT = file.path(tempdir(), "sm-r-magic-root"))
}
Sys.setenv(SM_R_MAGIC_BACKEND = "local", SM_R_MAGIC_PROGRESS = "text")

python_ready <- local({
  ready <- NULL
  function() {
    if (is.null(ready)) {
      ready <<- tryCatch({
        smrmagic::sm_python()
        smrmagic::sm_config(backend = "local", local_root = Sys.getenv("SM_R_MAGIC_LOCAL_ROOT"),
                            progress = "text", wait = TRUE)
        TRUE
      }, error = function(e) {
        # a python named explicitly (CI, make test) must work: that is an error, not a skip
        if (nzchar(Sys.getenv("SM_R_MAGIC_PYTHON"))) stop(e)
        message("smrmagic tests skipped: ", conditionMessage(e))
        FALSE
      })
    }
    ready
  }
})

skip_without_python <- function() {
  skip_if_not(nzchar(Sys.which("Rscript")), "Rscript is not on the PATH")
  skip_if_not(python_ready(), "the Python package sm_r_magic is not importable (set SM_R_MAGIC_PYTHON)")
}

# A small CSV of mtcars, written once per test file that asks for it.
mtcars_csv <- function() {
  dir <- file.path(tempdir(), "data")
  dir.create(dir, showWarnings = FALSE)
  path <- file.path(dir, "mtcars.csv")
  if (!file.exists(path)) utils::write.csv(mtcars, path, row.names = FALSE)
  path
}

# A message for R users: one line, no Python traceback, and none of the magics' words (--model, %%r_deploy,
# %config RMagic.x, predictor.wait()) outside `backticks` (where shell commands may stand).
expect_r_words <- function(message) {
  outside <- gsub("`[^`]*`", "", message)
  magic <- c("(^|[^[:alnum:]_-])--[a-z]", "%%?r_[a-z]", "%config", "RMagic\\.", "predictor\\.", "Traceback",
             "Error:", "TypeError", "the cell")
  found <- magic[vapply(magic, grepl, logical(1), x = outside)]
  expect(length(message) == 1 && !grepl("\n", message, fixed = TRUE) && !length(found),
         paste0("not one line in R's words (", paste(found, collapse = ", "), "): ", message))
  invisible(message)
}

# The sm_usage_error that `expr` signals, checked for R's words.
usage_error <- function(expr) {
  err <- tryCatch({
    expr
    NULL
  }, error = function(e) e)
  expect_s3_class(err, "sm_usage_error")
  if (inherits(err, "sm_usage_error")) expect_r_words(conditionMessage(err))
  err
}

# Wait (bounded, generous) until a running job has printed `pattern`: then its R is running. Stopping a local
# job before its runner has started ends it Failed instead of Stopped, so tests stop jobs only after this.
wait_for_log <- function(job, pattern, timeout = 120) {
  deadline <- Sys.time() + timeout
  while (!grepl(pattern, sm_logs(job, print = FALSE))) {
    if (Sys.time() > deadline) stop("the job did not print '", pattern, "' within ", timeout, " s")
    Sys.sleep(0.1)
  }
  invisible(job)
}
