# The RStudio addins. RStudio itself does not run here: rstudioapi is replaced by stubs through the
# smrmagic.rstudioapi option (testthat 3.1.6 has no local_mocked_bindings), which is what the addins read.

with_editor <- function(contents, code, selection = "", path = "") {
  context <- list(id = "1", path = path, contents = contents,
                  selection = list(list(range = NULL, text = selection)))
  old <- options(smrmagic.rstudioapi = list(isAvailable = function(...) TRUE,
                                           getSourceEditorContext = function() context))
  on.exit(options(old))
  force(code)
}

test_that("the training addin runs the selection, named after the script", {
  skip_without_python()
  out <- capture.output(type = "output", msgs <- capture.output(type = "message", {
    job <- with_editor(contents = c("cat('whole script\\n')", "cat('selected line\\n')"),
                       selection = "cat('selected line\\n')", path = "/home/me/My Analysis_v2.R",
                       sm_addin_train())
  }))
  expect_s3_class(job, "sm_job")
  expect_match(as.character(job), "^my-analysis-v2-")
  expect_identical(sm_status(job), "Completed")
  logs <- sm_logs(job, print = FALSE)
  expect_match(logs, "selected line")
  expect_false(grepl("whole script", logs))
  expect_true(any(grepl("sm_last\\(\\)", msgs)))
  expect_identical(sm_last()$py$name, job$py$name)
})

test_that("the processing addin runs the whole script when nothing is selected", {
  skip_without_python()
  capture.output(job <- with_editor(contents = c("cat('line one\\n')", "cat('line two\\n')"), selection = "",
                                    sm_addin_processing()))
  expect_identical(sm_py(job)$kind, "processing")
  expect_match(as.character(job), "^r-processing-")  # unsaved script: the default name
  logs <- sm_logs(job, print = FALSE)
  expect_match(logs, "line one")
  expect_match(logs, "line two")
})

test_that("a failing selection reports the R error without a traceback, handle in sm_last()", {
  skip_without_python()
  msgs <- capture.output(type = "message", invisible(capture.output(
    result <- with_editor(contents = "stop('addin boom')", sm_addin_train()))))
  expect_null(result)
  expect_true(any(grepl("failed: .*addin boom", msgs)))
  expect_identical(sm_status(sm_last()), "Failed")
})

test_that("the deploy addin serves the selection with the latest training job", {
  skip_without_python()
  skip_if_not(reticulate::py_has_attr(smrmagic:::.sm_api(), "deploy"), "this sm_r_magic has no deploy()")
  capture.output(sm_train("saveRDS(lm(mpg ~ wt, mtcars), file.path(sm_model_dir(), 'model.rds'))"))
  capture.output(endpoint <- with_editor(
    contents = "model_fn <- function(model_dir) readRDS(file.path(model_dir, 'model.rds'))", sm_addin_deploy()))
  on.exit(try(sm_delete(endpoint), silent = TRUE), add = TRUE)
  expect_s3_class(endpoint, "sm_endpoint")
  expect_equal(predict(endpoint, data.frame(wt = 3)), unname(predict(lm(mpg ~ wt, mtcars), data.frame(wt = 3))))
})

test_that("outside RStudio the addins say so", {
  old <- options(smrmagic.rstudioapi = list(isAvailable = function(...) FALSE))
  on.exit(options(old))
  expect_error(sm_addin_train(), "run inside RStudio")
  expect_identical(.sm_addin_name(""), NULL)
  expect_identical(.sm_addin_name("/x/--.R"), NULL)
})
