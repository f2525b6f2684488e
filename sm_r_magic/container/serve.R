# Serve mode of the shared R container, the R side. `entrypoint.sh serve` runs serve_front.py (the HTTP front,
# Python stdlib), which runs `entrypoint.R serve`: this file's sm_serve().
#
# SageMaker's hosting contract: GET /ping -> 200 once the model is loaded; POST /invocations -> prediction;
# listen on SAGEMAKER_BIND_TO_PORT (default 8080); ping answers within 2 s while invocations run; requests
# finish within 60 s; payloads up to 6 MB.
#
# Processes (see serve_front.py for the HTTP side):
#   front (Python) --starts--> R parent: loads the code and the model once (model_fn), warms up, then only forks
#                              workers when the front asks (one byte per worker on its control connection)
#                              `--forks--> N R workers: each holds one connection to the front and answers one
#                              request at a time, for as long as it lives (no fork per request or connection)
# The parent never runs request code, so every worker starts from the same loaded, warmed-up memory
# (copy-on-write). Front <-> R frames on 127.0.0.1 (a random port; each R connection first sends a JSON hello
# with a random token the front gave it in SM_R_MAGIC_FRONT_TOKEN):
#   front -> worker: int32 head length, int32 body length, head, body (big-endian). The head's lines: method,
#                    path, query string, content type (media type, lower case), accept (the media type to
#                    answer; the content type when the client sent none or */*), then the request headers
#                    ("Name: value", plumber mode only).
#   worker -> front: int32 length of the rest, int32 status, int32 head length, head (content type, then extra
#                    "Name: value" header lines), body. One write per message (TCP_NODELAY).
# R never writes to a client, so a client that hangs up cannot hurt a worker (with Rserve, one SIGPIPE made a
# connection process quit and delete the temp folder it shared with every other). Shared state lives in
# SM_R_MAGIC_SERVE_DIR, the front's folder (the staged code; R's own temp folder is inside it too, through
# TMPDIR), which the front removes when it ends. A worker ends only through the front: when it stops answering
# within the request timeout the front kills it; when it exits (even by quit() in user code: .Last kills it
# first, so R's clean-up never runs in a worker) the front asks the parent for a new one.
#
# Inference code: SAGEMAKER_SUBMIT_DIRECTORY (folder, tar.gz, file:// or s3://) + SAGEMAKER_PROGRAM (default
# inference.R) if set; else <model>/code/$SAGEMAKER_PROGRAM, <model>/code/deploy.R (the seed's convention) or
# <model>/code/inference.R. The program is sourced in the global environment with the code folder as working
# directory. Two kinds of program:
#   1. Handler mode: the program defines model_fn(model_dir) and optionally input_fn(body, content_type),
#      predict_fn(data, model), output_fn(prediction, accept).
#        body: a character string for text content types (text/*, JSON, CSV, XML, form data), else a raw vector.
#        Default input_fn:
#          text/csv -> a data.frame. A header row is optional (SageMaker's CSV clients send none). The first row
#            is the header when all its fields are non-numeric text (not empty, not NA) and the model's input
#            names are not known, or one of its fields is an input name, or a later row has a number (the
#            types differ); otherwise every row is data and the columns are, by position, the model's inputs
#            (which must then match in number) or V1, V2, ... when they are not known. The input names are known for models with a terms() method (lm, glm and
#            most formula models: the predictors of delete.response(terms(model))). Values are converted as
#            read.csv does (type.convert); "NA" is missing.
#          application/json -> data.frame for an array of records or an object of equal-length columns, else
#            the parsed value; null and the string "NA" are missing (as in CSV).
#          Anything else -> 415.
#        Default predict_fn: predict(model, newdata = data).
#        Default output_fn: text/csv -> one value per line, or for a data.frame or matrix one line per row
#          WITHOUT a header row (as SageMaker's CSV responses); application/json -> jsonlite::toJSON(x,
#          digits = NA): a data.frame becomes an array of records. Anything else -> 406.
#        output_fn may return a string, a raw vector, or list(body = , content_type = ).
#        Errors: input_fn -> 400, predict_fn/output_fn -> 500, the R message as text/plain body; call
#        sm_http_error(message, status) in any of them to answer another status.
#      GET /prototype (answered by the front; local and docker endpoints: SageMaker routes only /ping and
#      /invocations) gives one row of the model's own inputs, as a header and a row for Accept text/csv or as
#      JSON records: the first row of the model frame (lm, glm, ...) or of model$data (glm), else 404.
#   2. Plumber mode (seed-style deploy.R): a program that runs a plumber router - plumb("plumber.R")$run(host =
#      "0.0.0.0", port = 8080), pr_run(pr, port = 8080), pr() %>% ... %>% pr_run() - or a deploy.R that is
#      itself a plumber file (#* @get ... routes, no run call). The router's run() is intercepted (whatever
#      host/port it asks for) and the workers serve the router: each request becomes a Rook request for
#      router$call(), so filters, parsers, serializers and error handling are plumber's own. The front answers
#      GET /ping itself (200 once a worker is up; the router's /ping route is not called). Not supported:
#      websockets, async (promise) endpoints, mounted static files, the docs UI. With
#      SM_R_MAGIC_PLUMBER_NATIVE=1 the front is skipped and plumber/httpuv serves the router itself, in one
#      process, on SM_R_MAGIC_BIND_HOST:SAGEMAKER_BIND_TO_PORT.
#
# Start-up (0.3-0.5 s from exec to /ping for a small lm model, most of it R's own start): R's JIT is off in
# serve mode: it would compile each function we call once (sm_serve alone: 0.2 s). Instead the program's
# global functions are byte-compiled once in the parent and requests run through the default handlers before
# the first fork (.sm_warm_up), so workers start with everything loaded. Functions the program keeps
# elsewhere (in a list, an environment, a plumber route) run interpreted.
#
# Limits: a request handed to a worker in the instant it died gets 500 (it is not retried: it may have run);
# a worker forked but never connected (it died before its hello) is not asked for again; output that user code
# prints goes to the endpoint's log as R buffers it.

if (!exists(".sm_container_dir", inherits = FALSE)) {  # run as its own script, not sourced by entrypoint.R
  .sm_container_dir <- local({
    file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)[1]
    dirname(normalizePath(sub("^--file=", "", file_arg)))
  })
  source(file.path(.sm_container_dir, "lib.R"))
  source(file.path(.sm_container_dir, "helpers.R"))
}
.sm_serve_state <- new.env(parent = emptyenv())
compiler::enableJIT(0)

# --- small utilities ---------------------------------------------------------------------------------

.sm_serve_fail <- function(lines, status = 1L) {
  failure_file <- file.path(.sm_root(), "output", "failure")
  try(.sm_write_text(failure_file, lines), silent = TRUE)
  message(paste(lines, collapse = "\n"))
  quit(save = "no", status = status)
}

# Calls fn(...) and returns list(value) or list(error = condition, trace = user frames).
.sm_call_user <- function(fn, ...) fn(...)

.sm_capture <- function(fn, ..., .label = NULL) {
  trace <- character()
  value <- tryCatch(
    withCallingHandlers(.sm_call_user(fn, ...), error = function(e) {
      calls <- sys.calls()
      marks <- which(vapply(calls, function(cl) identical(cl[[1]], quote(.sm_call_user)), TRUE))
      if (length(marks)) {
        frames <- calls[-seq_len(max(marks))]
        stop_at <- which(vapply(frames, function(cl) {
          f <- cl[[1]]
          is.name(f) && as.character(f) %in% c(".handleSimpleError", "h", "stop")
        }, TRUE))
        if (length(stop_at)) frames <- frames[seq_len(min(stop_at) - 1L)]
        # drop our own wrappers (fn(...), source(), its eval frames) in front of the user's frames
        wrapper <- vapply(frames, function(cl) {
          f <- cl[[1]]
          is.name(f) && as.character(f) %in% c("fn", "source", "withVisible", "eval")
        }, TRUE)
        lead <- if (!is.null(.label)) 1L else if (all(wrapper)) length(wrapper) else which(!wrapper)[[1]] - 1L
        frames <- frames[-seq_len(lead)]
        if (length(frames) > 12L) frames <- frames[seq.int(length(frames) - 11L, length(frames))]
        trace <<- c(.label, vapply(frames, .sm_format_call, ""))
      }
    }),
    error = function(e) e
  )
  if (inherits(value, "error")) return(list(error = value, trace = trace))
  list(value = value)
}

.sm_captured_error_lines <- function(what, captured) .sm_error_lines(captured$error, captured$trace, what)

# Signal an HTTP error with a given status from input_fn, predict_fn or output_fn.
sm_http_error <- function(message, status = 400L) {
  stop(structure(class = c("sm_http_error", "error", "condition"),
                 list(message = message, call = NULL, status = as.integer(status))))
}

# --- model and code ----------------------------------------------------------------------------------

.sm_prepare_model_dir <- function(model_dir) {
  model_data <- Sys.getenv("SM_R_MAGIC_MODEL_DATA", "")
  dir.create(model_dir, recursive = TRUE, showWarnings = FALSE)
  if (!nzchar(model_data) || length(list.files(model_dir, all.files = TRUE, no.. = TRUE))) return(invisible())
  .sm_log("extracting ", model_data, " into ", model_dir)
  tarball <- sm_fetch(model_data, file.path(tempdir(), "model-data"))
  if (dir.exists(tarball)) {
    found <- list.files(tarball, pattern = "\\.tar\\.gz$", full.names = TRUE)
    if (length(found) != 1L) stop(sprintf("%s holds no single model.tar.gz", model_data))
    tarball <- found
  }
  .sm_safe_untar(tarball, model_dir)
  invisible()
}

# Returns list(dir, program) of the inference code, or fails the container with a clear message.
.sm_find_program <- function(model_dir) {
  submit_dir <- Sys.getenv("SAGEMAKER_SUBMIT_DIRECTORY", "")
  program <- Sys.getenv("SAGEMAKER_PROGRAM", "")
  if (nzchar(submit_dir)) {
    code_dir <- file.path(.sm_serve_dir(), "code")  # not under tempdir(): see the header
    staged <- tryCatch(.sm_stage_code(submit_dir, code_dir), error = function(e) e)
    if (inherits(staged, "error")) {
      .sm_serve_fail(sprintf("Error staging SAGEMAKER_SUBMIT_DIRECTORY=%s: %s", submit_dir, conditionMessage(staged)), 2L)
    }
    if (!nzchar(program)) program <- "inference.R"
    if (!file.exists(file.path(code_dir, program))) {
      .sm_serve_fail(sprintf("SAGEMAKER_PROGRAM %s not found in SAGEMAKER_SUBMIT_DIRECTORY=%s (files: %s)", program,
                             submit_dir, paste(list.files(code_dir), collapse = ", ")), 2L)
    }
    return(list(dir = normalizePath(code_dir), program = program))
  }
  code_dir <- file.path(model_dir, "code")
  candidates <- unique(c(if (nzchar(program)) program, "deploy.R", "inference.R"))
  for (candidate in candidates) {
    if (file.exists(file.path(code_dir, candidate))) return(list(dir = normalizePath(code_dir), program = candidate))
  }
  .sm_serve_fail(c(
    sprintf("No inference code: SAGEMAKER_SUBMIT_DIRECTORY is not set and %s has none of %s.", code_dir,
            paste(candidates, collapse = ", ")),
    "Serve a model trained with the train magic (its code is copied into model/code/) or set",
    "SAGEMAKER_SUBMIT_DIRECTORY/SAGEMAKER_PROGRAM to code defining model_fn(model_dir)."), 2L)
}

.sm_plumber_annotations <- "(?m)^\\s*#[*']\\s*@(get|post|put|delete|head|patch|options|use|filter|assets|plumber)\\b"

# Make every plumber router's $run() hand the router to us instead of starting httpuv.
.sm_patch_plumber <- function() {
  if (!requireNamespace("plumber", quietly = TRUE)) return(NULL)
  generator <- get("Plumber", envir = asNamespace("plumber"))
  original <- generator$public_methods$run
  if (isTRUE(generator$lock_class)) generator$unlock()
  generator$set("public", "run", overwrite = TRUE, function(host = "127.0.0.1", port = NULL, ...) {
    signalCondition(structure(class = c("sm_plumber_run", "condition"),
                              list(message = "plumber router run", call = NULL, router = self)))
    stop("plumber router $run() was intercepted by sm-r-magic serve outside of sm_serve()")
  })
  original
}

# Source the program; returns list(mode = "handler") or list(mode = "plumber", router = ).
.sm_load_program <- function(code) {
  path <- file.path(code$dir, code$program)
  text <- paste(readLines(path, warn = FALSE), collapse = "\n")
  uses_plumber <- grepl("plumb|pr_run|\\$run\\s*\\(", text) || grepl(.sm_plumber_annotations, text, perl = TRUE)
  if (uses_plumber) .sm_serve_state$plumber_run <- .sm_patch_plumber()
  sourced <- tryCatch(
    .sm_capture(function() source(path, local = globalenv(), keep.source = TRUE, echo = FALSE)),
    sm_plumber_run = function(cond) list(router = cond$router)
  )
  if (!is.null(sourced$router)) return(list(mode = "plumber", router = sourced$router))
  if (!is.null(sourced$error)) .sm_serve_fail(.sm_captured_error_lines(paste("in", code$program), sourced))
  if (exists("model_fn", envir = globalenv(), mode = "function", inherits = FALSE)) return(list(mode = "handler"))
  if (grepl(.sm_plumber_annotations, text, perl = TRUE)) {
    if (is.null(.sm_serve_state$plumber_run)) .sm_serve_fail(sprintf("%s is a plumber file but plumber is not installed", code$program))
    router <- .sm_capture(function() plumber::plumb(path))
    if (!is.null(router$error)) .sm_serve_fail(.sm_captured_error_lines(paste("plumbing", code$program), router))
    return(list(mode = "plumber", router = router$value))
  }
  .sm_serve_fail(sprintf(paste("%s defines no model_fn(model_dir) and runs no plumber router: define model_fn",
                               "(and optionally input_fn, predict_fn, output_fn) or a plumber API"), code$program), 2L)
}

# --- default handlers ----------------------------------------------------------------------------------

.sm_default_input_fn <- function(body, content_type) {
  if (is.raw(body)) body <- rawToChar(body)
  switch(content_type,
    "text/csv" = .sm_read_csv_body(body, .sm_serve_state$input_names),
    "application/json" = .sm_read_json_body(body),
    sm_http_error(sprintf(paste("content type '%s' is not supported by the default input_fn: send text/csv or",
                                "application/json, or define input_fn(body, content_type)"), content_type), 415L)
  )
}

# The fields of a CSV text as a character matrix (one row per line; "NA" stays a string here). Plain CSV (no
# quote character) is split directly, ~5x faster than read.csv for the one-row requests endpoints mostly get;
# quoted fields go through R's own reader.
.sm_csv_fields <- function(text) {
  if (grepl("\"", text, fixed = TRUE)) {
    rows <- utils::read.csv(text = text, header = FALSE, colClasses = "character", na.strings = character(),
                            strip.white = FALSE, check.names = FALSE)
    return(unname(as.matrix(rows)))
  }
  lines <- strsplit(text, "\n", fixed = TRUE)[[1]]
  if (grepl("\r", text, fixed = TRUE)) lines <- sub("\r$", "", lines)
  lines <- lines[nzchar(lines)]
  if (!length(lines)) return(matrix(character(), 0L, 0L))
  fields <- strsplit(paste0(lines, ","), ",", fixed = TRUE)  # the extra comma keeps a trailing empty field
  counts <- lengths(fields)
  if (any(counts != counts[[1]])) {
    blank <- !grepl("[^[:space:]]", lines)  # lines of spaces only: blank lines, as read.csv has them
    if (any(blank)) return(.sm_csv_fields(paste(lines[!blank], collapse = "\n")))
    bad <- which(counts != counts[[1]])[[1]]
    sm_http_error(sprintf("CSV line %d has %d fields where line 1 has %d", bad, counts[[bad]], counts[[1]]), 400L)
  }
  matrix(unlist(fields, use.names = FALSE), ncol = counts[[1]], byrow = TRUE)
}

# What as.numeric() reads as a number (a regular expression: as.numeric's warnings cost ~50 us per row).
.sm_number_pattern <- paste0("^\\s*[-+]?(([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?|0[xX][0-9a-fA-F]+|",
                             "Inf|inf|NaN|nan|Infinity|infinity)\\s*$")

# What the first CSV row is: "data" (a field is a number, empty or NA), "header" (all text and, when the model's
# input names are known, one of them is an input name) or "text" (all text, no input name: a header only if a
# later row has a number, as csv.Sniffer's column-type test has it).
.sm_first_row_kind <- function(fields, input_names) {
  if (anyNA(fields) || any(fields %in% c("", "NA")) || any(grepl(.sm_number_pattern, fields, perl = TRUE))) {
    return("data")
  }
  if (!length(input_names) || any(fields %in% input_names) || any(trimws(fields) %in% input_names)) "header" else "text"
}

# Column names from a header row, made syntactic and unique as read.csv does.
.sm_column_names <- function(fields) {
  if (any(grepl("^\\s|\\s$", fields, perl = TRUE))) fields <- trimws(fields)
  if (all(grepl("^[A-Za-z][A-Za-z0-9._]*$", fields, perl = TRUE)) && !anyDuplicated(fields)) return(fields)
  make.names(fields, unique = TRUE)
}

# The column names when the first CSV row (of the fields matrix) is a header, else NULL. What a first row is,
# is cached: clients send the same header row with every request (the checks cost ~0.1 ms).
.sm_header_cache <- new.env(hash = TRUE, parent = emptyenv())

.sm_csv_header <- function(fields, input_names) {
  first <- fields[1L, ]
  code <- utf8ToInt(substr(first[[1L]], 1L, 1L))
  if (length(code) == 1L && (code >= 48L && code <= 57L || code %in% c(43L, 45L, 46L))) return(NULL)  # a number
  key <- paste(first, collapse = ",")
  known <- .sm_header_cache[[key]]
  if (is.null(known)) {
    kind <- .sm_first_row_kind(first, input_names)
    known <- list(kind = kind, columns = if (kind != "data") .sm_column_names(first))
    if (length(.sm_header_cache) < 256L) assign(key, known, envir = .sm_header_cache)
  }
  if (known$kind == "header" ||
      (known$kind == "text" && nrow(fields) > 1L && any(grepl(.sm_number_pattern, fields[-1L, ], perl = TRUE)))) {
    return(known$columns)
  }
  NULL
}

.sm_read_csv_body <- function(text, input_names = NULL) {
  fields <- .sm_csv_fields(text)
  if (!nrow(fields)) sm_http_error("the CSV body has no rows", 400L)
  columns <- .sm_csv_header(fields, input_names)
  if (length(columns)) {
    fields <- fields[-1L, , drop = FALSE]
  } else if (length(input_names)) {
    if (ncol(fields) != length(input_names)) {
      sm_http_error(sprintf(paste("CSV rows without a header row must have one field per model input (%s), in",
                                  "that order: these have %d; or send a header row naming the columns"),
                            paste(input_names, collapse = ", "), ncol(fields)), 400L)
    }
    columns <- input_names
  } else {
    columns <- paste0("V", seq_len(ncol(fields)))
  }
  values <- lapply(seq_along(columns), function(j) utils::type.convert(fields[, j], as.is = TRUE, na.strings = "NA"))
  names(values) <- columns
  list2DF(values, nrow = nrow(fields))
}

.sm_read_json_body <- function(text) {
  x <- jsonlite::parse_json(text, simplifyVector = TRUE)
  if (is.list(x) && !is.data.frame(x) && length(x) && !is.null(names(x)) && all(nzchar(names(x))) &&
      all(vapply(x, function(col) is.atomic(col) && !is.null(col), TRUE)) && length(unique(lengths(x))) == 1L) {
    x <- list2DF(x)
  }
  .sm_na_strings(x)
}

# The string "NA" is a missing value, as read.csv has it (jsonlite already does so in numeric columns).
.sm_na_strings <- function(x) {
  if (is.character(x)) {
    x[x %in% "NA"] <- NA_character_
  } else if (is.data.frame(x)) {
    for (j in which(vapply(x, is.character, TRUE))) x[[j]][x[[j]] %in% "NA"] <- NA_character_
  }
  x
}

.sm_default_predict_fn <- function(data, model) stats::predict(model, newdata = data)

# One value per line, or one line per row of a data.frame or matrix (no header row unless asked for).
.sm_csv_text <- function(x, header = FALSE) {
  if (is.data.frame(x) || is.matrix(x)) {
    con <- textConnection(NULL, "w", local = TRUE)
    on.exit(close(con))
    if (header) writeLines(paste(.sm_csv_quote(colnames(x)), collapse = ","), con)
    utils::write.table(x, con, sep = ",", row.names = FALSE, col.names = FALSE, qmethod = "double")
    return(paste0(paste(textConnectionValue(con), collapse = "\n"), "\n"))
  }
  if (is.list(x)) x <- unlist(x)
  if (is.factor(x)) x <- as.character(x)
  values <- as.character(x)
  values[is.na(x)] <- "NA"
  paste0(paste(values, collapse = "\n"), if (length(values)) "\n" else "")
}

.sm_csv_quote <- function(values) {
  quote <- grepl("[\",\n]", values)
  values[quote] <- paste0("\"", gsub("\"", "\"\"", values[quote], fixed = TRUE), "\"")
  values
}

.sm_default_output_fn <- function(prediction, accept) {
  switch(accept,
    "text/csv" = .sm_csv_text(prediction),
    "application/json" = as.character(jsonlite::toJSON(prediction, digits = NA, na = "null")),
    sm_http_error(sprintf(paste("accept type '%s' is not supported by the default output_fn: ask for text/csv or",
                                "application/json, or define output_fn(prediction, accept)"), accept), 406L)
  )
}

.sm_is_text_type <- function(content_type) {
  startsWith(content_type, "text/") || content_type == "application/json" ||
    grepl("json|csv|xml|javascript|x-www-form-urlencoded|yaml", content_type)
}

# --- the model's inputs ------------------------------------------------------------------------------------

# The names of the model's inputs when its terms say (lm, glm and most formula models), else NULL.
.sm_input_names <- function(model) {
  tt <- tryCatch(stats::delete.response(stats::terms(model)), error = function(e) NULL)
  if (!inherits(tt, "terms")) return(NULL)
  names <- all.vars(tt)
  if (length(names)) names else NULL
}

# One row of the model's own inputs (the first row of its model frame or of model$data), or NULL.
.sm_example_row <- function(model, input_names) {
  if (!length(input_names) || !is.list(model)) return(NULL)
  for (frame in list(model[["model"]], model[["data"]])) {
    if (is.data.frame(frame) && nrow(frame) && all(input_names %in% names(frame))) {
      row <- frame[1L, input_names, drop = FALSE]
      row[] <- lapply(row, function(col) if (is.factor(col)) as.character(col) else as.vector(col))
      rownames(row) <- NULL
      return(row)
    }
  }
  NULL
}

# The example request bodies the front serves at GET /prototype.
.sm_example_payloads <- function(row) {
  if (is.null(row)) return(NULL)
  list("text/csv" = .sm_csv_text(row, header = TRUE),
       "application/json" = as.character(jsonlite::toJSON(row, digits = NA, na = "null")))
}

# --- requests (in a worker) --------------------------------------------------------------------------

# A response: list(body, content type, extra "Name: value" header lines, status).
.sm_text_response <- function(status, text) list(paste0(text, "\n"), "text/plain", character(), as.integer(status))

.sm_error_response <- function(e, default_status) {
  status <- if (inherits(e, "sm_http_error")) e$status else default_status
  .sm_text_response(status, conditionMessage(e))
}

.sm_invoke <- function(body, content_type, accept) {
  st <- .sm_serve_state
  stage <- 400L  # the status of an error in input_fn; then 500 in predict_fn, output_fn and after
  tryCatch({
    data <- st$input_fn(if (.sm_is_text_type(content_type)) rawToChar(body) else body, content_type)
    stage <- 500L
    out <- st$output_fn(st$predict_fn(data, st$model), accept)
    response_type <- accept
    if (is.list(out) && !is.null(out$body)) {
      if (!is.null(out$content_type)) response_type <- out$content_type
      out <- out$body
    }
    if (!is.raw(out)) out <- charToRaw(enc2utf8(paste(as.character(out), collapse = "\n")))
    list(out, if (nzchar(response_type)) response_type else "application/octet-stream", character(), 200L)
  }, error = function(e) .sm_error_response(e, stage))
}

# Rook input stream for plumber (httpuv's rook.input interface: read, read_lines, rewind).
.sm_rook_input <- function(raw) {
  pos <- 0L
  list(
    read = function(l = -1L) {
      left <- length(raw) - pos
      n <- if (l < 0L) left else min(l, left)
      out <- if (n > 0L) raw[pos + seq_len(n)] else raw(0)
      pos <<- pos + n
      out
    },
    read_lines = function(n = -1L) {
      rest <- if (pos < length(raw)) raw[(pos + 1L):length(raw)] else raw(0)
      con <- rawConnection(rest)
      on.exit(close(con))
      readLines(con, n = n, warn = FALSE)
    },
    rewind = function() pos <<- 0L
  )
}

# The Rook request plumber's router$call() takes, from the front's head lines and the body.
.sm_plumber_request <- function(fields, body) {
  req <- new.env()
  req$REQUEST_METHOD <- fields[[1]]
  req$PATH_INFO <- fields[[2]]
  req$SCRIPT_NAME <- ""
  req$QUERY_STRING <- if (nzchar(fields[[3]])) paste0("?", fields[[3]]) else ""
  lines <- fields[-(1:5)]
  colon <- regexpr(":", lines, fixed = TRUE)
  lines <- lines[colon > 0L]
  colon <- colon[colon > 0L]
  names <- toupper(gsub("-", "_", substr(lines, 1L, colon - 1L), fixed = TRUE))
  values <- trimws(substring(lines, colon + 1L))
  for (i in seq_along(names)) assign(paste0("HTTP_", names[[i]]), values[[i]], envir = req)
  if (!is.null(req$HTTP_CONTENT_TYPE)) req$CONTENT_TYPE <- req$HTTP_CONTENT_TYPE
  if (!is.null(req$HTTP_CONTENT_LENGTH)) req$CONTENT_LENGTH <- req$HTTP_CONTENT_LENGTH
  host <- if (is.null(req$HTTP_HOST)) "localhost" else req$HTTP_HOST
  req$SERVER_NAME <- sub(":.*$", "", host)
  req$SERVER_PORT <- Sys.getenv("SAGEMAKER_BIND_TO_PORT", "8080")
  req$REMOTE_ADDR <- ""
  req$rook.version <- "1.1-0"
  req$rook.url_scheme <- "http"
  req$httpuv.version <- "sm-r-magic"
  req$rook.input <- .sm_rook_input(body)
  req$rook.errors <- list(cat = function(...) cat(..., file = stderr()), flush = function() invisible())
  req
}

.sm_plumber_response <- function(res) {
  if (!is.list(res) || is.null(res$status)) {
    return(.sm_text_response(500L, "plumber returned no response (async/promise endpoints are not supported)"))
  }
  headers <- res$headers
  content_type <- "text/plain"
  extra <- character()
  for (name in names(headers)) {
    value <- paste(headers[[name]], collapse = ", ")
    lname <- tolower(name)
    if (lname == "content-type") content_type <- value
    else if (!lname %in% c("content-length", "transfer-encoding", "connection")) {
      extra <- c(extra, paste0(name, ": ", value))
    }
  }
  body <- res$body
  if (is.null(body)) body <- ""
  if (!is.raw(body)) body <- paste(as.character(body), collapse = "")
  list(body, content_type, extra, as.integer(res$status))
}

# One request from the front (head text, body raw) -> the response message for the front.
.sm_respond <- function(head, body) {
  fields <- strsplit(head, "\n", fixed = TRUE)[[1]]
  if (length(fields) < 5L) fields <- c(fields, rep("", 5L - length(fields)))
  if (.sm_serve_state$mode == "handler") return(.sm_encode_response(.sm_invoke(body, fields[[4]], fields[[5]])))
  response <- tryCatch(.sm_plumber_response(.sm_serve_state$router$call(.sm_plumber_request(fields, body))),
                       error = function(e) .sm_text_response(500L, paste("internal error:", conditionMessage(e))))
  .sm_encode_response(response)
}

.sm_encode_response <- function(response) {
  body <- response[[1]]
  if (!is.raw(body)) body <- charToRaw(enc2utf8(paste(body, collapse = "")))
  head <- charToRaw(enc2utf8(paste(c(response[[2]], response[[3]]), collapse = "\n")))
  sizes <- c(8L + length(head) + length(body), as.integer(response[[4]]), length(head))
  c(writeBin(sizes, raw(), size = 4L, endian = "big"), head, body)
}

# --- processes ---------------------------------------------------------------------------------------

.sm_serve_dir <- function() Sys.getenv("SM_R_MAGIC_SERVE_DIR", tempdir())

.sm_send_frame <- function(con, payload) {
  writeBin(c(writeBin(length(payload), raw(), size = 4L, endian = "big"), payload), con)
}

# A connection to the front, introduced by a JSON hello (role, pid, the front's token, extra fields).
.sm_connect_front <- function(role, ...) {
  con <- socketConnection("127.0.0.1", as.integer(Sys.getenv("SM_R_MAGIC_FRONT_PORT")), blocking = TRUE,
                          open = "r+b", timeout = 1e7, options = "no-delay")
  hello <- list(role = role, pid = Sys.getpid(), token = Sys.getenv("SM_R_MAGIC_FRONT_TOKEN"), ...)
  .sm_send_frame(con, charToRaw(enc2utf8(.sm_json(hello))))
  con
}

# A worker: answers the front's requests one at a time until the front closes the connection.
.sm_serve_requests <- function(con) {
  repeat {
    sizes <- readBin(con, "integer", n = 2L, size = 4L, endian = "big")
    if (length(sizes) < 2L) return(invisible())
    head <- if (sizes[[1]] > 0L) rawToChar(readBin(con, "raw", n = sizes[[1]])) else ""
    body <- if (sizes[[2]] > 0L) readBin(con, "raw", n = sizes[[2]]) else raw(0)
    if (length(body) < sizes[[2]]) return(invisible())
    tempdir(check = TRUE)  # recreated if user code removed it
    writeBin(.sm_respond(head, body), con)
  }
}

# In a new fork: never run R's clean-up (quit() would delete the temp folder the parent and the other
# workers use), serve, and end through parallel's exit (mcexit: no clean-up either).
.sm_worker_main <- function(control) {
  close(control)
  assign(".Last", function() tools::pskill(Sys.getpid(), tools::SIGKILL), envir = globalenv())
  con <- tryCatch(.sm_connect_front("worker"), error = function(e) NULL)
  if (!is.null(con)) .sm_serve_requests(con)
  invisible()
}

# The parent: one new worker per byte the front sends; when the front is gone, end the workers and quit.
.sm_fork_workers <- function(control) {
  st <- .sm_serve_state
  repeat {
    command <- readBin(control, "raw", n = 1L)
    if (!length(command)) break
    job <- parallel::mcparallel(.sm_worker_main(control), detached = TRUE)
    st$worker_pids <- c(st$worker_pids, job$pid)
  }
  if (length(st$worker_pids)) tools::pskill(st$worker_pids, tools::SIGTERM)
  quit(save = "no", status = 0)
}

# --- warm-up -------------------------------------------------------------------------------------------

.sm_compile_functions <- function(names) {
  env <- globalenv()
  for (name in names) {
    fn <- get0(name, envir = env, inherits = FALSE)
    if (is.function(fn) && !is.primitive(fn)) {
      compiled <- tryCatch(compiler::cmpfun(fn), error = function(e) NULL)
      if (!is.null(compiled)) assign(name, compiled, envir = env)
    }
  }
}

# Workers start from the parent's memory: whatever the parent has not compiled or loaded, each worker would
# redo in its first requests. So the parent compiles the program's functions (with the JIT off they would run
# interpreted; our own request path gains nothing measurable from compiling, which costs ~0.25 s), then runs
# requests through the whole path with the *default* handlers (no user code runs before a real request): one
# row of the model's own inputs (or a stand-in) as CSV with and without a header and as JSON. That loads the
# lazily loaded functions they need (predict methods, model frames, type.convert, jsonlite).
.sm_warm_up <- function(program_functions) {
  st <- .sm_serve_state
  .sm_compile_functions(program_functions)
  loadNamespace("jsonlite")
  if (st$mode != "handler") return(invisible())
  handlers <- mget(c("input_fn", "predict_fn", "output_fn"), envir = st)
  on.exit(list2env(handlers, envir = st))
  st$input_fn <- .sm_default_input_fn
  st$predict_fn <- .sm_default_predict_fn
  st$output_fn <- .sm_default_output_fn
  row <- .sm_example_row(st$model, st$input_names)
  if (is.null(row)) row <- data.frame(x = 1)
  bodies <- list("text/csv" = .sm_csv_text(row, header = TRUE), "text/csv" = .sm_csv_text(row),
                 "application/json" = as.character(jsonlite::toJSON(row, digits = NA)))
  for (i in seq_along(bodies)) {
    type <- names(bodies)[[i]]
    head <- sprintf("POST\n/invocations\n\n%s\n%s", type, type)
    for (repeat_it in 1:2) suppressWarnings(try(.sm_respond(head, charToRaw(bodies[[i]])), silent = TRUE))
  }
  invisible()
}

# --- main --------------------------------------------------------------------------------------------

# The model folder, the program and its packages; fails the container with a clear message.
.sm_prepare_code <- function(model_dir) {
  prepared <- tryCatch(.sm_prepare_model_dir(model_dir), error = function(e) e)
  if (inherits(prepared, "error")) .sm_serve_fail(paste("Error preparing the model:", conditionMessage(prepared)), 2L)
  code <- .sm_find_program(model_dir)
  setwd(code$dir)
  # Per-job R packages (--packages, renv.lock/DESCRIPTION beside the code), as for jobs.
  installed <- tryCatch({ .sm_install_job_packages(code$dir); TRUE }, error = function(e) e)
  if (inherits(installed, "error")) .sm_serve_fail(paste("Error installing R packages:", conditionMessage(installed)), 2L)
  code
}

.sm_load_model <- function(model_dir) {
  st <- .sm_serve_state
  loaded <- .sm_capture(get("model_fn", envir = globalenv()), model_dir, .label = "model_fn(model_dir)")
  if (!is.null(loaded$error)) .sm_serve_fail(.sm_captured_error_lines("in model_fn", loaded))
  st$model <- loaded$value
  st$input_names <- .sm_input_names(st$model)
  st$example <- .sm_example_payloads(.sm_example_row(st$model, st$input_names))
}

# The handlers: the program's (byte-compiled by now) or the defaults.
.sm_take_handlers <- function() {
  st <- .sm_serve_state
  user_fn <- function(name, default) {
    if (exists(name, envir = globalenv(), mode = "function", inherits = FALSE)) get(name, envir = globalenv()) else default
  }
  st$input_fn <- user_fn("input_fn", .sm_default_input_fn)
  st$predict_fn <- user_fn("predict_fn", .sm_default_predict_fn)
  st$output_fn <- user_fn("output_fn", .sm_default_output_fn)
}

# SM_R_MAGIC_PLUMBER_NATIVE=1: plumber/httpuv serves the router itself, in this process (no front).
.sm_run_plumber_natively <- function(router) {
  host <- Sys.getenv("SM_R_MAGIC_BIND_HOST", "0.0.0.0")
  port <- as.integer(Sys.getenv("SAGEMAKER_BIND_TO_PORT", "8080"))
  .sm_log("serving the plumber router with plumber/httpuv on ", host, ":", port, " (1 process)")
  run <- .sm_serve_state$plumber_run
  environment(run) <- router$.__enclos_env__
  run(host = host, port = port)
  quit(save = "no", status = 0)
}

sm_serve <- function() {
  st <- .sm_serve_state
  native <- identical(Sys.getenv("SM_R_MAGIC_PLUMBER_NATIVE", ""), "1")
  if (!native && !nzchar(Sys.getenv("SM_R_MAGIC_FRONT_PORT"))) {
    .sm_serve_fail("serve.R runs behind the HTTP front: start serve mode with entrypoint.sh serve", 2L)
  }
  model_dir <- file.path(.sm_root(), "model")
  Sys.setenv(SM_MODEL_DIR = model_dir)
  code <- .sm_prepare_code(model_dir)
  .sm_log("loading model: ", file.path(code$dir, code$program), ", model dir ", model_dir)
  ours <- ls(globalenv(), all.names = TRUE)
  program <- .sm_load_program(code)
  st$mode <- program$mode
  if (program$mode == "handler") {
    if (native) .sm_serve_fail("SM_R_MAGIC_PLUMBER_NATIVE=1 serves plumber programs only: unset it", 2L)
    .sm_take_handlers()
    .sm_load_model(model_dir)
  } else {
    st$router <- program$router
    if (native) .sm_run_plumber_natively(program$router)
  }
  .sm_warm_up(setdiff(ls(globalenv(), all.names = TRUE), ours))
  if (program$mode == "handler") .sm_take_handlers()  # the compiled versions of the program's functions
  control <- tryCatch(.sm_connect_front("parent", mode = st$mode, program = code$program, example = st$example),
                      error = function(e) .sm_serve_fail(paste("Error: cannot reach the HTTP front:",
                                                               conditionMessage(e))))
  # Never return to the caller: entrypoint.R is being read by R's REPL and forked workers share its file
  # offset, so reading on could run stray lines of it.
  .sm_fork_workers(control)
}
