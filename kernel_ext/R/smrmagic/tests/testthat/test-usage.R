# Bad input from R: an sm_usage_error with one line in R's words (arguments, not the magics' --options),
# before anything is created.

job_count <- function() {
  length(list.files(file.path(Sys.getenv("SM_R_MAGIC_LOCAL_ROOT"), "jobs")))
}

test_that("code that is not R code, missing or empty is a usage error", {
  skip_without_python()
  expect_match(conditionMessage(usage_error(sm_train(42))), "^code must be R code as a string.*not numeric$")
  expect_match(conditionMessage(usage_error(sm_train())), "^code is missing")
  expect_match(conditionMessage(usage_error(sm_processing())), "^code is missing")
  expect_match(conditionMessage(usage_error(sm_train("  \n"))), "^code is empty")
  usage_error(sm_train(function(alpha) alpha))
  usage_error(sm_train(NA_character_))
})

test_that("an unknown argument is named the R way, with a near miss suggested", {
  skip_without_python()
  expect_identical(conditionMessage(usage_error(sm_train("1", foo = 1))),
                   "unknown argument `foo` to sm_train(): see ?sm_train")
  expect_identical(conditionMessage(usage_error(sm_train("1", chanels = list(train = "x.csv")))),
                   "unknown argument `chanels` to sm_train(): did you mean `channels`? See ?sm_train")
  expect_identical(conditionMessage(usage_error(sm_processing("1", max_runtim = 60))),
                   "unknown argument `max_runtim` to sm_processing(): did you mean `max_runtime`? See ?sm_processing")
  # the Python name of an argument the R function has under its own name is not a way around it
  usage_error(sm_train("1", raise_on_failure = FALSE))
  # train()'s own extras are not processing()'s
  expect_match(conditionMessage(usage_error(sm_processing("1", spot = TRUE))), "unknown argument `spot`")
  expect_match(conditionMessage(usage_error(sm_deploy(bogus = 1))), "unknown argument `bogus` to sm_deploy()")
  expect_match(conditionMessage(usage_error(sm_train("1", "my-job"))), "only unnamed argument")
})

test_that("pass-through arguments are checked like the R ones", {
  skip_without_python()
  expect_identical(conditionMessage(usage_error(sm_train("1", dry_run = "yes"))), "dry_run must be TRUE or FALSE")
  expect_identical(conditionMessage(usage_error(sm_train("1", max_runtime = 0))),
                   "max_runtime = 0: give a whole number of at least 1")
  expect_identical(conditionMessage(usage_error(sm_processing("1", volume_size = "big"))),
                   'volume_size = "big": give a whole number of at least 1')
  expect_identical(conditionMessage(usage_error(sm_train("1", max_wait = 60))),
                   "`max_wait` goes with spot = TRUE: it bounds the wait for spot capacity plus the run")
  expect_match(conditionMessage(usage_error(sm_train("1", metrics = list(rmse = "rmse: [0-9]+")))),
               '^metrics\\$rmse: the regex needs a group around the number, e\\.g\\. metrics = list\\(rmse = "rmse: ')
})

test_that("what the magics refuse while parsing their options, the R functions refuse too", {
  skip_without_python()
  before <- job_count()
  expect_match(conditionMessage(usage_error(sm_train("1", packages = c("glmnet", "not a package")))),
               "^`packages`: 'not a package' is not an R package name \\(e\\.g\\. packages = c\\(\"glmnet\", ")
  expect_match(conditionMessage(usage_error(sm_train("1", hyperparameters = list(sagemaker_program = "x.R")))),
               "reserved")
  expect_match(conditionMessage(usage_error(sm_processing("1", inputs = list("raw data" = mtcars_csv())))),
               "^inputs: the name \"raw data\"")
  expect_match(conditionMessage(usage_error(sm_processing("1", outputs = "train set"))),
               "^outputs: the name \"train set\"")
  expect_match(conditionMessage(usage_error(sm_train("1", env = list("MY-VAR" = 1)))),
               "^env: \"MY-VAR\" is not an environment variable name")
  expect_identical(job_count(), before)  # nothing was created
})

test_that("the API's messages reach R in R's words", {
  skip_without_python()
  before <- job_count()
  expect_identical(
    conditionMessage(usage_error(sm_train("1", name = "no spaces allowed"))),
    paste('invalid name = "no spaces allowed": use letters, digits and hyphens, starting and ending with a',
          'letter or digit (e.g. name = "mtcars-lm")'))
  expect_identical(conditionMessage(usage_error(sm_train("1", instance_count = 0))),
                   "instance_count = 0: give a whole number of at least 1")
  expect_match(conditionMessage(usage_error(sm_processing("1", inputs = list(raw = "/does/not/exist.csv")))),
               "^inputs\\$raw: /does/not/exist.csv does not exist")
  expect_match(conditionMessage(usage_error(sm_processing("1", inputs = list(code = mtcars_csv())))),
               "^inputs\\$code is reserved")
  expect_match(conditionMessage(usage_error(sm_processing("1", source_dir = "/no/such/folder"))),
               '^source_dir = "/no/such/folder" is not a folder')
  expect_match(conditionMessage(usage_error(sm_processing("1", files = "/no/such/file.csv"))),
               '^files = "/no/such/file.csv" does not exist')
  expect_match(conditionMessage(usage_error(sm_deploy(model = "no-such-job"))), '^model = "no-such-job": ')
  expect_match(conditionMessage(usage_error(sm_deploy(workers = -1))), "`workers` must be 0")
  expect_match(conditionMessage(usage_error(sm_deploy(serverless = "lots"))), '^serverless = "lots": expected')
  expect_identical(job_count(), before)
})
