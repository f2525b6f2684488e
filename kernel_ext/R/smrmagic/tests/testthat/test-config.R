# sm_config(): the Python RMagic settings, read and set from R.

test_that("sm_config reads and sets the RMagic settings", {
  skip_without_python()
  settings <- sm_config()
  expect_s3_class(settings, "sm_config")
  expect_identical(settings$backend, "local")
  expect_identical(normalizePath(settings$local_root), normalizePath(Sys.getenv("SM_R_MAGIC_LOCAL_ROOT")))
  expect_output(print(settings), "backend +\"local\"")
  old <- settings$instance_count
  changed <- sm_config(instance_count = 2, instance_type = "ml.m5.xlarge")
  expect_identical(changed$instance_count, 2L)
  expect_identical(sm_config()$instance_type, "ml.m5.xlarge")
  sm_config(instance_count = old, instance_type = "ml.m5.large")
})

test_that("bad settings are one-line R errors", {
  skip_without_python()
  err <- expect_error(sm_config(backend = "mars"), class = "sm_usage_error")
  expect_identical(conditionMessage(err),
                   'sm_config(backend = "mars") is not valid: backend takes one of "local", "docker", "sagemaker"')
  expect_error(sm_config(wait = "maybe"), "wait takes TRUE or FALSE", class = "sm_usage_error")
  expect_error(sm_config(no_such_thing = 1), "unknown setting `no_such_thing` to sm_config()",
               class = "sm_usage_error")
  expect_error(sm_config("local"), "name = value", class = "sm_usage_error")
  expect_identical(sm_config()$backend, "local")
})
