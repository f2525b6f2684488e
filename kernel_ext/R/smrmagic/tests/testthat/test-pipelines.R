# Pipelines from R (issue 13) on the local backend with real R: three jobs become a pipeline; it runs, both
# branches of its condition, a failed step, a stopped execution; the model registry (sm_models, sm_approve) and
# the deploy of a registered version, predicting what R's own predict() gives.

# One group per test run, so the suite can run again in the same local root.
group <- paste0("r-models-", format(Sys.time(), "%H%M%S"), "-", Sys.getpid())
condition <- function(threshold) {
  paste("evaluate.evaluation/evaluation.json:regression_metrics.rmse.value <=", threshold)
}
serve <- function() {
  model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))
}

# The three jobs (split, fit, evaluate), run once for the file, as a user runs them before making a pipeline.
pipeline_jobs <- local({
  jobs <- NULL
  function() {
    if (is.null(jobs)) {
      prep <- sm_processing(function() {
        df <- read.csv(file.path(sm_input("raw"), "mtcars.csv"))
        keep <- seq_len(nrow(df)) %% 4 != 0
        write.csv(df[keep, ], file.path(sm_output("train"), "train.csv"), row.names = FALSE)
        write.csv(df[!keep, ], file.path(sm_output("test"), "test.csv"), row.names = FALSE)
      }, inputs = list(raw = mtcars_csv()), outputs = c("train", "test"), name = "prep", progress = "none")
      fit <- sm_train(function() {
        df <- read.csv(file.path(sm_channel("train"), "train.csv"))
        saveRDS(lm(mpg ~ wt + hp, data = df), file.path(sm_model_dir(), "model.rds"))
      }, channels = list(train = prep$outputs$train), name = "fit", progress = "none")
      ev <- sm_processing(function() {
        model <- readRDS(file.path(sm_model_input("model"), "model.rds"))
        test <- read.csv(file.path(sm_input("test"), "test.csv"))
        rmse <- sqrt(mean((predict(model, test) - test$mpg)^2))
        sm_report(list(regression_metrics = list(rmse = list(value = rmse))), output = "evaluation")
      }, inputs = list(model = fit$model_data, test = prep$outputs$test), outputs = "evaluation",
      name = "evaluate", progress = "none")
      jobs <<- list(prep = prep, fit = fit, ev = ev)
    }
    jobs
  }
})

the_pipeline <- local({
  pipe <- NULL
  function() {
    if (is.null(pipe)) {
      jobs <- pipeline_jobs()
      pipe <<- sm_pipeline("mtcars-r", steps = list(jobs$prep, jobs$fit, jobs$ev), condition = condition(10),
                           register = group, inference = serve)
    }
    pipe
  }
})

csv_of <- function(rows, name) {
  dir <- file.path(tempdir(), name)
  dir.create(dir, showWarnings = FALSE)
  utils::write.csv(rows, file.path(dir, "mtcars.csv"), row.names = FALSE)
  file.path(dir, "mtcars.csv")
}

rmse_of <- function(execution) {
  report <- file.path(execution$step_job("evaluate")$outputs$evaluation, "evaluation.json")
  jsonlite::fromJSON(report)$regression_metrics$rmse$value
}

count <- function(folder) {
  length(list.files(file.path(Sys.getenv("SM_R_MAGIC_LOCAL_ROOT"), folder), recursive = TRUE))
}

test_that("three jobs become a pipeline: its definition, two executions, versions listed newest first", {
  skip_without_python()
  pipe <- the_pipeline()
  expect_s3_class(pipe, "sm_pipeline")
  expect_output(print(pipe), paste0("register the model of fit into ", group, " \\(served by inference.R"))
  expect_identical(names(pipe$steps), c("prep", "fit", "evaluate"))
  expect_identical(pipe$parameters, list(raw = normalizePath(mtcars_csv())))
  definition <- pipe$definition()
  expect_identical(vapply(definition$Steps, `[[`, "", "Name"), c("prep", "fit", "evaluate", "condition"))
  expect_identical(definition$Steps[[2]]$Arguments$InputDataConfig[[1]]$DataSource$S3DataSource$S3Uri,
                   list(Get = "Steps.prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"))
  expect_identical(definition$Steps[[2]]$Arguments$AlgorithmSpecification$TrainingImage,
                   sm_py(pipe$steps$fit)$request$AlgorithmSpecification$TrainingImage)
  json <- pipe$definition(json = TRUE)
  expect_match(json, '^\\{\n  "Version": "2020-12-01"')

  expect_output(run <- pipe$run(), "pipeline execution [a-z0-9]+ of mtcars-r \\(local\\): Succeeded")
  expect_s3_class(run, "sm_execution")
  expect_identical(run$status, "Succeeded")
  expect_identical(run$pipeline, "mtcars-r")
  expect_match(format(run), "Succeeded .+ 5/5 steps succeeded")
  steps <- run$steps
  expect_identical(steps$step, c("prep", "fit", "evaluate", "condition", "register"))
  expect_identical(steps$status, rep("Succeeded", 5))
  expect_identical(steps$outcome[steps$step == "condition"], "True")
  fit_job <- run$step_job("fit")
  expect_s3_class(fit_job, "sm_job")
  expect_identical(fit_job$status, "Completed")
  expect_match(fit_job$model_data, paste0("/", run$name, "/fit/"))
  expect_identical(steps$job[2], as.character(fit_job))

  # a second execution with a new value of the jobs' input registers version 2, from other data
  other <- csv_of(mtcars[1:20, ], "mtcars-first-20")
  run2 <- pipe$run(parameters = list(raw = other), progress = "none")
  expect_identical(run2$status, "Succeeded")
  expect_identical(run2$parameters, list(raw = other))
  expect_false(isTRUE(all.equal(rmse_of(run2), rmse_of(run))))

  models <- sm_models(group)
  expect_identical(models$package, paste0(group, c("/2", "/1")))
  expect_identical(models$version, c(2L, 1L))
  expect_identical(models$approval, rep("PendingManualApproval", 2))
  expect_identical(models$execution, c(run2$name, run$name))
  expect_identical(models$model_data, c(run2$step_job("fit")$model_data, fit_job$model_data))
  expect_equal(models$regression_metrics.rmse.value, c(rmse_of(run2), rmse_of(run)), tolerance = 1e-12)
  expect_s3_class(models$created, "POSIXct")

  # executions are listed and found again by id, as a new R session would
  listed <- sm_executions("mtcars-r")
  expect_true(all(c(run$name, run2$name) %in% listed$execution))
  expect_s3_class(attr(listed, "handles")[[1]], "sm_execution")
  again <- sm_attach(run$name)
  expect_s3_class(again, "sm_execution")
  expect_identical(sm_status(again), "Succeeded")
  expect_identical(again$steps$step, steps$step)
})

test_that("the else branch: the Fail step's message is the R error, nothing is registered", {
  skip_without_python()
  jobs <- pipeline_jobs()
  before <- nrow(sm_models(group))
  strict <- sm_pipeline("strict-r", steps = list(jobs$prep, jobs$fit, jobs$ev), condition = condition(0.001),
                        register = group, inference = serve, fail_message = "RMSE above 0.001")
  err <- expect_error(strict$run(progress = "none"), class = "sm_execution_failed")
  expect_s3_class(err, "sm_job_failed")
  expect_match(conditionMessage(err), "^pipeline execution [a-z0-9]+ of strict-r failed: RMSE above 0\\.001$")
  run <- err$handle
  expect_s3_class(run, "sm_execution")
  expect_identical(sm_status(run), "Failed")
  expect_identical(sm_failure_reason(run), "RMSE above 0.001")
  steps <- run$steps
  expect_identical(steps$outcome[steps$step == "condition"], "False")
  expect_identical(steps$status[steps$step == "fail"], "Failed")
  expect_false("register" %in% steps$step)
  expect_identical(nrow(sm_models(group)), before)
  # error_on_failure = FALSE returns the Failed execution instead
  failed <- strict$run(progress = "none", error_on_failure = FALSE)
  expect_identical(failed$status, "Failed")
  expect_identical(sm_last()$name, failed$name)
})

test_that("a failed step fails the execution with its R error; later steps do not run", {
  skip_without_python()
  pipe <- the_pipeline()
  no_mpg <- csv_of(data.frame(speed = 1:8, dist = 8:1), "no-mpg")
  err <- expect_error(pipe$run(parameters = list(raw = no_mpg), progress = "none"), class = "sm_execution_failed")
  expect_match(conditionMessage(err), "failed: step fit \\(training job fit-[^)]+\\) failed: .*object 'mpg' not found")
  expect_r_words(conditionMessage(err))
  run <- err$handle
  expect_identical(run$steps$step, c("prep", "fit"))
  expect_identical(run$steps$status, c("Succeeded", "Failed"))
  expect_match(run$failure_reason, "object 'mpg' not found")
  expect_match(sm_logs(run$step_job("fit"), print = FALSE), "object 'mpg' not found")
  expect_match(run$logs(print = FALSE), "\\[fit\\] .*object 'mpg' not found")
})

test_that("an execution started with wait = FALSE is stopped with $stop()", {
  skip_without_python()
  config <- file.path(tempdir(), "sleep-0")
  dir.create(config, showWarnings = FALSE)
  writeLines("0", file.path(config, "seconds.txt"))
  slow <- sm_processing(function() {
    seconds <- as.numeric(readLines(file.path(sm_input("cfg"), "seconds.txt")))
    cat("sleeping", seconds, "s\n")
    Sys.sleep(seconds)
  }, inputs = list(cfg = config), name = "slow", progress = "none")
  long <- file.path(tempdir(), "sleep-600")
  dir.create(long, showWarnings = FALSE)
  writeLines("600", file.path(long, "seconds.txt"))
  pipe <- sm_pipeline("slow-r", steps = list(slow))
  run <- pipe$run(parameters = list(cfg = long), wait = FALSE)
  on.exit(if (!run$status %in% c("Stopped", "Failed", "Succeeded")) run$stop(), add = TRUE)
  expect_identical(run$status, "Executing")
  deadline <- Sys.time() + 120
  while (!"slow" %in% run$steps$step && Sys.time() < deadline) Sys.sleep(0.1)
  wait_for_log(run$step_job("slow"), "sleeping 600 s")
  run$stop()
  expect_identical(run$status, "Stopped")
  expect_identical(run$step_job("slow")$status, "Stopped")
  expect_output(run$wait(), "Stopped")
})

test_that("approve, then deploy the newest approved version: R's own predict() of the registered model", {
  skip_without_python()
  pipe <- the_pipeline()
  while (nrow(sm_models(group)) < 2) pipe$run(progress = "none")  # when run alone: the versions the first test made
  models <- sm_models(group)
  # nothing approved yet: one line saying which version to approve, and no endpoint
  endpoints <- nrow(sm_endpoints())
  newest <- models$package[1]
  err <- usage_error(sm_deploy(model_package = group))
  expect_identical(conditionMessage(err), paste0(
    'model_package = "', group, '": no version is Approved (newest: ', newest, ", PendingManualApproval): ",
    'approve one with sm_approve("', newest, '"), or name a version'))
  expect_identical(nrow(sm_endpoints()), endpoints)

  version1 <- paste0(group, "/1")
  expect_output(row <- sm_approve(version1), paste0("^", version1, ": Approved"))
  expect_identical(row$approval, "Approved")
  expect_output(sm_approve(newest, reject = TRUE), paste0(newest, ": Rejected"))
  models <- sm_models(group)
  expect_identical(models$approval[models$package %in% c(version1, newest)], c("Rejected", "Approved"))
  expect_match(conditionMessage(usage_error(sm_deploy(model_package = newest))),
               paste0("is Rejected: approve it first \\(sm_approve\\(\"", newest, "\"\\)\\)"))

  endpoint <- sm_deploy(model_package = group, workers = 1, progress = "none")
  on.exit(try(sm_delete(endpoint), silent = TRUE), add = TRUE)
  expect_identical(endpoint$status, "InService")
  expect_match(as.character(endpoint), paste0("^", group))
  # the registered model of version 1, unpacked here, predicts what the endpoint answers
  unpacked <- tempfile("v1-")
  utils::untar(models$model_data[models$package == version1], exdir = unpacked)
  model <- readRDS(file.path(unpacked, "model.rds"))
  newdata <- data.frame(wt = c(2.5, 3.2, 4.1), hp = c(100, 150, 230))
  expect_equal(predict(endpoint, newdata), unname(predict(model, newdata)), tolerance = 1e-12)
  sm_delete(endpoint)
  expect_identical(endpoint$status, "Deleted")
})

test_that("bad input to the pipeline functions is one line in R's words, and nothing is created", {
  skip_without_python()
  jobs <- pipeline_jobs()
  steps <- list(jobs$prep, jobs$fit, jobs$ev)
  pipe <- the_pipeline()
  before <- c(count("pipelines"), count("model-registry"), nrow(sm_endpoints()))
  message_of <- function(expr) conditionMessage(usage_error(expr))

  expect_match(message_of(sm_pipeline("p")), "^steps is missing: .*steps = list\\(prep, fit, ev\\)")
  expect_match(message_of(sm_pipeline(steps = steps)), "^name is missing")
  expect_identical(message_of(sm_pipeline("p", steps = list(jobs$prep, "fit"))), paste(
    "steps[[2]] is a character, not a job handle: give the handles sm_processing() / sm_train() returned,",
    "e.g. steps = list(prep, fit, ev)"))
  expect_match(message_of(sm_pipeline("p", steps = "prep")), "^steps must be a list of job handles")
  expect_match(message_of(sm_pipeline("p", steps = list())),
               "^a pipeline needs at least one step: .*e\\.g\\. steps = list\\(prep, fit, ev\\)$")
  expect_match(message_of(sm_pipeline("not a name", steps = steps)), "^invalid pipeline name 'not a name'")
  expect_match(message_of(sm_pipeline("p", steps = steps, condition = "nope.evaluation/evaluation.json:a <= 1")),
               "no step is named 'nope'")
  expect_match(message_of(sm_pipeline("p", steps = steps, condition = sub("<=", "~", condition(3)))),
               "^malformed condition|^unknown operator")
  expect_match(message_of(sm_pipeline("p", steps = steps, condition = sub("3$", "three", condition(3)))),
               "not a number")
  expect_match(message_of(sm_pipeline("p", steps = list(jobs$prep), register = group)),
               paste0('^register = "', group, '" needs a training step: add the sm_train\\(\\) job'))
  expect_match(message_of(sm_pipeline("p", steps = steps, register = "bad_group!")),
               "^invalid model package group name 'bad_group!'")
  expect_match(message_of(sm_pipeline("p", steps = steps, inference = serve)),
               "^`inference` names the code registered versions are served with: it goes with register = GROUP")
  expect_match(message_of(sm_pipeline("p", steps = steps, register = group, inference = "no-such-file.R")),
               '^inference = "no-such-file.R": no such R file')
  expect_match(message_of(sm_pipeline("p", steps = steps, register = group, inference = "x <- 1\ny <- 2")),
               "^inference: the code defines no model_fn")
  expect_match(message_of(sm_pipeline("p", steps = steps, register = group, inference = jobs$fit)),
               "^inference must be an endpoint handle .*not a job handle$")
  expect_match(message_of(sm_pipeline("p", steps = steps, register = group, model_step = "prep")),
               "^model_step = \"prep\" is not a training step of this pipeline \\(training steps: fit\\)")
  expect_match(message_of(sm_pipeline("p", steps = steps, cache = "3 parsecs")), "give a duration like 30d")
  expect_identical(message_of(sm_pipeline("p", steps = steps, registr = group)),
                   "unknown argument `registr` to sm_pipeline(): did you mean `register`? See ?sm_pipeline")

  expect_identical(message_of(pipe$run(parameters = list(nope = "x.csv"))),
                   "unknown pipeline parameter(s) nope: this pipeline's parameters are raw")
  expect_identical(message_of(pipe$run(paramters = list(raw = "x.csv"))),
                   "unknown argument `paramters` to $run(): did you mean `parameters`? See ?pipeline-fields")
  expect_match(message_of(pipe$run(parameters = list(raw = "/no/such/file.csv"))), "/no/such/file.csv")
  expect_match(message_of(pipe$nope), "^a pipeline has no `\\$nope`: use \\$name, \\$steps")

  run <- sm_attach(sm_executions("mtcars-r")$execution[1])
  expect_match(message_of(run$step_job("nope")), "^step nope of [a-z0-9]+ has not started")
  expect_match(message_of(sm_outputs(run)), "^sm_outputs\\(\\) reads a job: .*sm_outputs\\(run\\$step_job")
  expect_match(message_of(run$py_thing), "^a pipeline execution handle has no `\\$py_thing`")

  expect_identical(message_of(sm_models(paste0(group, "/1"))), paste0(
    "give a model package group (", group, "), not a version: every version is listed"))
  expect_match(message_of(sm_models("no-such-group")), "^no model package group 'no-such-group'")
  expect_identical(message_of(sm_approve(group)), paste0(
    group, ": say which version, e.g. ", group, '/1 (sm_models("', group, '") lists them)'))
  expect_match(message_of(sm_approve(paste0(group, "/two"))), "write GROUP/VERSION with a version number")
  expect_match(message_of(sm_approve()), "^package is missing")
  expect_identical(message_of(sm_deploy(model = jobs$fit, model_package = group)),
                   "give `model` or `model_package`, not both")
  expect_match(message_of(sm_deploy(model_package = "no-such-group")), "no-such-group")
  expect_identical(c(count("pipelines"), count("model-registry"), nrow(sm_endpoints())), before)
})
