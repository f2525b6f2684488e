# Processing and training jobs on the local backend: real R jobs in a temporary root.

test_that("processing from a string: inputs, outputs, status, logs, progress in R's output", {
  skip_without_python()
  csv <- mtcars_csv()
  code <- '
    df <- read.csv(file.path(sm_input("raw"), "mtcars.csv"))
    cat("rows:", nrow(df), "\n")
    write.csv(df[df$am == 1, ], file.path(sm_output("train"), "train.csv"), row.names = FALSE)
    write.csv(df[df$am == 0, ], file.path(sm_output("test"), "test.csv"), row.names = FALSE)
  '
  # the progress lines go through R's console (so RStudio, IRkernel and knitr show them)
  expect_output(job <- sm_processing(code, inputs = list(raw = csv), outputs = c("train", "test"),
                                     name = "split"),
                "\\[sm-r-magic\\] processing job split-.* on local")
  expect_s3_class(job, "sm_job")
  expect_identical(sm_status(job), "Completed")
  expect_match(as.character(job), "^split-")
  expect_match(format(job), "Completed")
  outputs <- sm_outputs(job)
  expect_setequal(names(outputs), c("train", "test"))
  train <- read.csv(file.path(outputs$train, "train.csv"))
  expect_identical(nrow(train), sum(mtcars$am == 1))
  expect_output(logs <- sm_logs(job), "rows: 32")
  expect_match(logs, "rows: 32")
  expect_null(sm_model_data(job))
  expect_identical(sm_last()$py$name, job$py$name)
})

test_that("training from a function body, with hyperparameters", {
  skip_without_python()
  expect_output(job <- sm_train(function() {
    n <- sm_hp("n", 0)
    formula <- sm_hp("formula", "mpg ~ 1")
    fit <- lm(as.formula(formula), data = mtcars)
    saveRDS(fit, file.path(sm_model_dir(), "model.rds"))
    cat("n is", n, "and is.integer:", is.numeric(n), "\n")
  }, hyperparameters = list(n = 500, formula = "mpg ~ wt"), name = "fn-body"), "n is 500")
  expect_identical(sm_status(job), "Completed")
  model <- sm_model_data(job)
  expect_true(file.exists(model))
  expect_identical(sm_outputs(job)$model, model)
  files <- utils::untar(model, list = TRUE)
  expect_true("model.rds" %in% sub("^\\./", "", files))
  expect_identical(sm_py(job)$hyperparameters, list(n = 500L, formula = "mpg ~ wt"))
})

test_that("training from an .R file, with a channel and env", {
  skip_without_python()
  script <- tempfile(fileext = ".R")
  writeLines(c("df <- read.csv(file.path(sm_channel('train'), 'mtcars.csv'))",
               "cat('channel rows', nrow(df), 'greeting', Sys.getenv('GREETING'), '\\n')"), script)
  job <- sm_train(script, channels = c(train = mtcars_csv()), env = list(GREETING = "hello"),
                  progress = "none")
  expect_identical(sm_status(job), "Completed")
  expect_match(sm_logs(job, print = FALSE), "channel rows 32 greeting hello")
})

test_that("a failing job is an R error with the R message, and its handle stays reachable", {
  skip_without_python()
  err <- expect_error(
    capture.output(sm_train('x <- 1\nstop("the data is bad: ", x)', name = "doomed")),
    class = "sm_job_failed")
  expect_match(conditionMessage(err), "^training job doomed-[-0-9a-f]+ failed: .*the data is bad: 1$")
  expect_false(grepl("\n", conditionMessage(err)))
  expect_false(grepl("Traceback \\(most recent call last\\)|sm_r_magic\\.errors", conditionMessage(err)))
  expect_s3_class(err$handle, "sm_job")
  expect_identical(sm_status(err$handle), "Failed")
  expect_match(err$failure_reason, "the data is bad")
  expect_identical(sm_last()$py$name, err$handle$py$name)
  expect_match(sm_failure_reason(sm_last()), "the data is bad: 1")
  # or keep the Failed handle instead of an error
  job <- sm_processing('stop("no")', error_on_failure = FALSE, progress = "none")
  expect_identical(sm_status(job), "Failed")
  expect_match(sm_logs(job, print = FALSE), "no")
})

test_that("bad input is a one-line R error before anything runs", {
  skip_without_python()
  err <- expect_error(sm_train("x <- (", progress = "none"), class = "sm_usage_error")
  expect_false(grepl("Traceback", conditionMessage(err)))
  expect_error(sm_train("1", name = "no spaces allowed"), 'invalid name = "no spaces allowed"',
               class = "sm_usage_error")
  expect_error(sm_processing("1", inputs = list(raw = "/does/not/exist.csv")), "does not exist")
  expect_error(sm_processing("1", inputs = list("data.csv")), "inputs must be named")
  expect_error(sm_train("1", instance_count = 1.5), "whole number")
  expect_error(sm_train("1", backend = "mars"), class = "sm_error")
})

test_that("dry_run returns the SageMaker request as a list", {
  skip_without_python()
  request <- sm_processing("cat(1)", outputs = list(out = NULL), max_runtime = 600, dry_run = TRUE)
  expect_type(request, "list")
  expect_identical(request$StoppingCondition$MaxRuntimeInSeconds, 600L)
  expect_identical(request$ProcessingOutputConfig$Outputs[[1]]$OutputName, "out")
})

test_that("async jobs: wait, stop, attach, list", {
  skip_without_python()
  job <- sm_train("cat('started\\n'); Sys.sleep(60)", name = "sleepy", wait = FALSE)
  expect_identical(sm_status(job), "InProgress")
  expect_identical(sm_wait(job, timeout = 0.5, progress = "none"), job)  # returns at the timeout
  wait_for_log(job, "started")
  sm_stop(job)
  expect_identical(sm_status(job), "Stopped")
  again <- sm_attach(as.character(job))
  expect_s3_class(again, "sm_job")
  expect_identical(sm_status(again), "Stopped")
  table <- sm_jobs()
  expect_true(as.character(job) %in% table$name)
  expect_identical(table$status[table$name == as.character(job)], "Stopped")
  expect_s3_class(attr(table, "handles")[[1]], "sm_job")
  expect_error(sm_attach("never-ran"), "no local job named never-ran", class = "sm_usage_error")
  expect_error(sm_status("sleepy"), "must be a job, endpoint or pipeline execution handle")
})
