# sm_deploy() and predict() on the local backend: an R server on 127.0.0.1 per endpoint.

test_that("deploy a trained lm and predict: the same numbers as R's own predict()", {
  skip_without_python()
  skip_if_not(reticulate::py_has_attr(smrmagic:::.sm_api(), "deploy"), "this sm_r_magic has no deploy()")
  job <- sm_train(function() {
    fit <- lm(mpg ~ wt + hp, data = mtcars)
    saveRDS(fit, file.path(sm_model_dir(), "model.rds"))
  }, name = "lm", progress = "none")
  expect_output(endpoint <- sm_deploy(function() {
    model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))
  }, model = job, name = "lm-endpoint", workers = 1), "InService")
  on.exit(try(sm_delete(endpoint), silent = TRUE), add = TRUE)
  expect_s3_class(endpoint, "sm_endpoint")
  expect_identical(sm_status(endpoint), "InService")
  newdata <- data.frame(wt = c(2.5, 3.1, 4.2), hp = c(110, 150, 230))
  expected <- unname(predict(lm(mpg ~ wt + hp, data = mtcars), newdata))
  expect_equal(predict(endpoint, newdata), expected, tolerance = 1e-12)
  expect_equal(predict(endpoint, as.matrix(newdata)), expected, tolerance = 1e-12)
  # JSON both ways
  expect_equal(predict(endpoint, list(wt = newdata$wt, hp = newdata$hp)), expected, tolerance = 1e-12)
  raw <- sm_invoke(endpoint, "wt,hp\n2.5,110\n", content_type = "text/csv")
  expect_identical(raw$content_type, "text/csv")
  expect_equal(as.numeric(rawToChar(raw$body)), expected[1], tolerance = 1e-12)
  # an R error in the endpoint is an R error here, with the endpoint's message
  err <- expect_error(predict(endpoint, data.frame(speed = 1)), class = "sm_invocation_error")
  expect_match(conditionMessage(err), "HTTP 500: .*object 'wt' not found")
  expect_identical(err$status, 500L)
  expect_true(as.character(endpoint) %in% sm_endpoints()$name)
  # the handle's fields and methods through $, as in Python
  expect_identical(endpoint$status, "InService")
  expect_identical(endpoint$name, as.character(endpoint))
  expect_identical(endpoint$kind, "endpoint")
  expect_match(endpoint$url, "^http://127\\.0\\.0\\.1:[0-9]+")
  expect_equal(endpoint$predict(newdata), expected, tolerance = 1e-12)
  expect_identical(rawToChar(endpoint$invoke("wt,hp\n2.5,110\n")$body), rawToChar(raw$body))
  expect_error(endpoint$model_data, "an endpoint handle has no `\\$model_data`", class = "sm_usage_error")
  endpoint$delete()
  expect_identical(sm_status(endpoint), "Deleted")
  expect_identical(endpoint$status, "Deleted")
  # what to do next, in R's words: sm_deploy(model = ...), not %%r_deploy --model
  err <- usage_error(predict(endpoint, newdata))
  expect_match(conditionMessage(err), paste0("was deleted: deploy the model again with sm_deploy\\(model = \"",
                                             ".*model\\.tar\\.gz\"\\) \\(a new endpoint and handle\\)$"))
  # the model by job name, code saved with the model is absent: a clear error from the server's start
  expect_error(sm_deploy(model = "no-such-job"), class = "sm_usage_error")
})
