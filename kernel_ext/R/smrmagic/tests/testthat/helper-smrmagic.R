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
