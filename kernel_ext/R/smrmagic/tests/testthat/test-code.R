# How the job's code is taken from a string, a file, a function body or a quoted expression (no Python).

test_that("a string, or lines, is the code", {
  expect_identical(.sm_code("cat(1)"), "cat(1)")
  expect_identical(.sm_code(c("x <- 1", "cat(x)")), "x <- 1\ncat(x)")
})

test_that("a string naming an existing .R file is that file's text", {
  path <- tempfile(fileext = ".R")
  writeLines(c("# a script", "cat('from file')"), path)
  expect_identical(.sm_code(path), "# a script\ncat('from file')")
  expect_error(.sm_code(file.path(tempdir(), "missing.R")), "does not exist")
  # a one-line expression that merely ends in .R is code when it has spaces or newlines around calls
  expect_identical(.sm_code("x <- 1\nprint(x.R)"), "x <- 1\nprint(x.R)")
})

test_that("a function's body is the code, verbatim with source references", {
  fun <- eval(parse(text = c(
    "function() {",
    "  # read and fit",
    "  fit <- lm(mpg ~ wt, data = mtcars)",
    "  if (TRUE) {",
    "    cat('ok\\n')",
    "  }",
    "}"), keep.source = TRUE))
  expect_identical(.sm_code(fun), "# read and fit\nfit <- lm(mpg ~ wt, data = mtcars)\nif (TRUE) {\n  cat('ok\\n')\n}")
  one_line <- eval(parse(text = "function() { x <- 1; cat(x) }", keep.source = TRUE))
  expect_identical(.sm_code(one_line), "x <- 1; cat(x)")
})

test_that("without source references the body is deparsed", {
  fun <- eval(parse(text = "function() {\n  # gone\n  x <- 1\n  cat(x)\n}", keep.source = FALSE))
  expect_identical(.sm_code(fun), "x <- 1\ncat(x)")
  expect_identical(.sm_code(eval(parse(text = "function() cat(2)", keep.source = FALSE))), "cat(2)")
  expect_identical(.sm_code(str2lang("{ a <- 1; print(a) }")), "a <- 1\nprint(a)")
  expect_identical(.sm_code(str2lang("cat(3)")), "cat(3)")
})

test_that("bad code arguments are one-line errors", {
  expect_error(.sm_code(function(alpha) alpha), "must take no arguments")
  expect_error(.sm_code(NULL), "code is missing")
  expect_null(.sm_code(NULL, allow_null = TRUE))
  expect_error(.sm_code(42), "not numeric")
  expect_error(.sm_code(NA_character_), "contains NA")
})
