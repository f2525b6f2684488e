# Serve mode of the shared R container: `entrypoint.sh serve` sources this file and calls sm_serve().
#
# SageMaker's hosting contract: GET /ping -> 200 once the model is loaded; POST /invocations -> prediction;
# listen on SAGEMAKER_BIND_TO_PORT (default 8080); ping must answer within 2 s while an invocation runs;
# payloads up to 6 MB.
#
# HTTP server: Rserve's built-in HTTP server (run.Rserve(http.port = ...)), not plumber/httpuv. Rserve
# forks one R process per TCP connection and that process serves every request of the (kept-alive)
# connection: ~0.1 ms of server overhead per request, where httpuv stalls ~40 ms per response on kept-alive
# connections (DESIGN.md section 3). Consequences, all deliberate:
#   * The model is loaded once in the parent before it listens; each connection's process inherits it
#     (copy-on-write), so /ping is only answered once model_fn has returned.
#   * Workers (SM_R_MAGIC_WORKERS, default: number of CPUs) bound how many invocations *evaluate* at once:
#     a connection's process takes one of N worker slots (fcntl locks through the filelock package) for
#     input_fn -> predict_fn -> output_fn and frees it before sending the response. Connections beyond N wait
#     for a slot; 0 means no limit. Without filelock installed, concurrency is not limited (logged).
#   * /ping never takes a slot and a new connection is served by a new process, so ping answers while every
#     worker is busy (a busy connection cannot carry a ping: HTTP/1.1 clients open another connection).
#   * Body size: Rserve reads the whole body (it only refuses ~2 GB); bodies over SM_R_MAGIC_MAX_PAYLOAD_MB
#     (default 6) get 413 before any user code runs, and the connection stays usable. Chunked request
#     bodies are not supported by Rserve (send Content-Length; SageMaker does).
#   * Shutdown: SIGTERM (or SIGINT/SIGHUP) makes run.Rserve return in the parent, which then terminates its
#     connection processes (SIGTERM, SIGKILL after 2 s) and exits 0. Rserve reaps finished connection
#     processes itself.
#
# Inference code: SAGEMAKER_SUBMIT_DIRECTORY (folder, tar.gz, file:// or s3://) + SAGEMAKER_PROGRAM (default
# inference.R) if set; else <model>/code/$SAGEMAKER_PROGRAM, <model>/code/deploy.R (the seed's convention) or
# <model>/code/inference.R. The program is sourced in the global environment with the code folder as working
# directory. Two kinds of program:
#   1. Handler mode: the program defines model_fn(model_dir) and optionally input_fn(body, content_type),
#      predict_fn(data, model), output_fn(prediction, accept).
#        body: a character string for text content types (text/*, JSON, CSV, XML, form data), else a raw vector.
#        Default input_fn: text/csv -> read.csv(text = body, header = TRUE) (a header row is required: define
#          input_fn for header-less CSV); application/json -> data.frame for an array of records or an
#          object of equal-length columns, else the parsed value. Anything else -> 415.
#        Default predict_fn: predict(model, newdata = data).
#        Default output_fn: text/csv -> one value per line (write.csv without row names for data frames and
#          matrices); application/json -> jsonlite::toJSON(x, digits = NA). Anything else -> 406.
#        output_fn may return a string, a raw vector, or list(body = , content_type = ).
#        accept defaults to the request's content type (also for */*).
#        Errors: input_fn -> 400, predict_fn/output_fn -> 500, the R message as text/plain body; call
#        sm_http_error(message, status) in any of them to answer another status.
#   2. Plumber mode (seed-style deploy.R, unchanged): a program that runs a plumber router -
#        plumb("plumber.R")$run(host = "0.0.0.0", port = 8080), pr_run(pr, port = 8080), pr() %>% ... %>%
#        pr_run() - or a deploy.R that is itself a plumber file (#* @get /ping ... routes, no run call).
#      The router's run() is intercepted (whatever host/port it asks for) and the router is served by the same
#      Rserve server: each request becomes a Rook request for router$call(), so filters, parsers, serializers
#      and error handling are plumber's own. GET /ping answers 200 if the router has no /ping route. Not
#      supported there: websockets, async (promise) endpoints, mounted static files, the docs UI. With
#      SM_R_MAGIC_PLUMBER_NATIVE=1 the router runs on plumber/httpuv itself instead (on our host and port).
#
# Settings: SAGEMAKER_BIND_TO_PORT (8080), SM_R_MAGIC_BIND_HOST (0.0.0.0; any host other than 127.0.0.1 /
# localhost listens on all interfaces), SM_R_MAGIC_WORKERS, SM_R_MAGIC_MAX_PAYLOAD_MB, SM_R_MAGIC_ACCESS_LOG=1
# (one line per request on stderr; by default only failed requests are logged), SM_R_MAGIC_MODEL_DATA
# (a model.tar.gz to extract into the model folder when it is empty: the local backend).
#
# Start-up (~0.5 s from exec to /ping for a small lm model, ~0.2 s of it R's own start): R's JIT is off in
# serve mode. It would compile each function we call once at start-up (sm_serve alone: 0.2 s) and, in every
# connection process, each closure not compiled before the fork (~140 ms on a new connection). Instead the
# program's global functions are byte-compiled and a request is run before listening (see .sm_warm_up).
# Functions the program keeps elsewhere (in a list, an environment, a plumber route) run interpreted.
#
# Limits: a new connection costs a fork plus copy-on-write page faults in its first request (p50 ~14 ms where
# a kept-alive request takes ~3 ms and plumber, one process, answers a fresh connection in ~7.6 ms; see
# README "Speed"): clients should keep connections alive, as SageMaker does. Each open connection holds one R process. With remote disabled (127.0.0.1), Rserve listens on all
# interfaces but serves loopback peers only. Requests are not cut at 60 s (SageMaker does that). If the parent
# is SIGKILLed, connection processes live on until their client closes the connection.

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

.sm_env_number <- function(name, default) {
  value <- Sys.getenv(name, "")
  if (!nzchar(value)) return(default)
  number <- suppressWarnings(as.numeric(value))
  if (is.na(number) || number < 0) stop(sprintf("%s='%s' is not a non-negative number", name, value), call. = FALSE)
  number
}

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
    code_dir <- file.path(tempdir(), "code")
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
    "text/csv" = utils::read.csv(text = body, header = TRUE),
    "application/json" = {
      x <- jsonlite::parse_json(body, simplifyVector = TRUE)
      if (is.list(x) && !is.data.frame(x) && length(x) && !is.null(names(x)) && all(nzchar(names(x))) &&
          all(vapply(x, function(col) is.atomic(col) && !is.null(col), TRUE)) && length(unique(lengths(x))) == 1L) {
        x <- list2DF(x)
      }
      x
    },
    sm_http_error(sprintf(paste("content type '%s' is not supported by the default input_fn: send text/csv or",
                                "application/json, or define input_fn(body, content_type)"), content_type), 415L)
  )
}

.sm_default_predict_fn <- function(data, model) stats::predict(model, newdata = data)

.sm_csv_text <- function(x) {
  if (is.data.frame(x) || is.matrix(x)) {
    con <- textConnection(NULL, "w", local = TRUE)
    on.exit(close(con))
    utils::write.csv(x, con, row.names = FALSE)
    return(paste0(paste(textConnectionValue(con), collapse = "\n"), "\n"))
  }
  if (is.list(x)) x <- unlist(x)
  if (is.factor(x)) x <- as.character(x)
  values <- as.character(x)
  values[is.na(x)] <- "NA"
  paste0(paste(values, collapse = "\n"), if (length(values)) "\n" else "")
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
  grepl("^text/|json|csv|xml|javascript|x-www-form-urlencoded|yaml", content_type)
}

# --- request handling --------------------------------------------------------------------------------

.sm_media_type <- function(value) {
  if (is.null(value) || !length(value) || !nzchar(value)) return("")
  tolower(trimws(sub(";.*$", "", value)))
}

.sm_header <- function(header_text, name) {
  m <- regexpr(paste0("(?im)^", name, ":[ \t]*[^\n]*"), header_text, perl = TRUE)
  if (m < 0) return("")
  trimws(sub("^[^:]*:", "", regmatches(header_text, m)))
}

.sm_text_response <- function(status, text) list(paste0(text, "\n"), "text/plain", character(), as.integer(status))

.sm_log_request <- function(method, url, status, started) {
  if ((status >= 400L || .sm_serve_state$access_log) && !isTRUE(.sm_serve_state$warming_up)) {
    message(sprintf("[sm-r-magic] %s %s %d %.1f ms (pid %d)", method, url, status,
                    1000 * (proc.time()[[3]] - started), Sys.getpid()))
  }
}

.sm_error_response <- function(e, default_status) {
  status <- if (inherits(e, "sm_http_error")) e$status else default_status
  .sm_text_response(status, conditionMessage(e))
}

# Take a worker slot (returns a lock to release, or NULL when concurrency is not limited).
.sm_acquire_worker <- function() {
  slots <- .sm_serve_state$slots
  n <- length(slots)
  if (!n) return(NULL)
  order <- (Sys.getpid() + seq_len(n)) %% n + 1L
  for (i in order) {
    lock <- filelock::lock(slots[[i]], exclusive = TRUE, timeout = 0)
    if (!is.null(lock)) return(lock)
  }
  repeat {
    for (i in order) {
      lock <- filelock::lock(slots[[i]], exclusive = TRUE, timeout = 25)
      if (!is.null(lock)) return(lock)
    }
  }
}

.sm_invoke <- function(body, content_type, accept) {
  st <- .sm_serve_state
  if (!nzchar(accept) || accept == "*/*") accept <- content_type
  lock <- .sm_acquire_worker()
  if (!is.null(lock)) on.exit(filelock::unlock(lock))
  data <- tryCatch({
    payload <- if (is.null(body)) "" else if (.sm_is_text_type(content_type)) rawToChar(body) else as.vector(body)
    st$input_fn(payload, content_type)
  }, error = function(e) structure(list(e), class = "sm_failed"))
  if (inherits(data, "sm_failed")) return(.sm_error_response(data[[1]], 400L))
  prediction <- tryCatch(st$predict_fn(data, st$model), error = function(e) structure(list(e), class = "sm_failed"))
  if (inherits(prediction, "sm_failed")) return(.sm_error_response(prediction[[1]], 500L))
  out <- tryCatch(st$output_fn(prediction, accept), error = function(e) structure(list(e), class = "sm_failed"))
  if (inherits(out, "sm_failed")) return(.sm_error_response(out[[1]], 500L))
  response_type <- accept
  if (is.list(out) && !is.null(out$body)) {
    if (!is.null(out$content_type)) response_type <- out$content_type
    out <- out$body
  }
  if (!is.raw(out)) out <- paste(as.character(out), collapse = "\n")
  list(out, if (nzchar(response_type)) response_type else "application/octet-stream", character(), 200L)
}

.sm_execution_parameters <- function() {
  st <- .sm_serve_state
  list(as.character(jsonlite::toJSON(list(MaxConcurrentTransforms = max(1L, length(st$slots)),
                                          BatchStrategy = "MULTI_RECORD", MaxPayloadInMB = st$max_payload_mb),
                                     auto_unbox = TRUE)), "application/json", character(), 200L)
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

.sm_plumber_request <- function(method, url, query, body, header_text) {
  req <- new.env()
  req$REQUEST_METHOD <- method
  req$PATH_INFO <- url
  req$SCRIPT_NAME <- ""
  req$QUERY_STRING <- if (length(query)) {
    paste0("?", paste(utils::URLencode(names(query), reserved = TRUE), utils::URLencode(unname(query), reserved = TRUE),
                      sep = "=", collapse = "&"))
  } else ""
  lines <- strsplit(header_text, "\n", fixed = TRUE)[[1]][-1L]
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
  req$SERVER_PORT <- as.character(.sm_serve_state$port)
  req$REMOTE_ADDR <- ""
  req$rook.version <- "1.1-0"
  req$rook.url_scheme <- "http"
  req$httpuv.version <- "sm-r-magic"
  req$rook.input <- .sm_rook_input(if (is.null(body)) raw(0) else as.vector(body))
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
    else if (lname != "content-length") extra <- c(extra, paste0(name, ": ", value))
  }
  body <- res$body
  if (is.null(body)) body <- ""
  if (!is.raw(body)) body <- paste(as.character(body), collapse = "")
  list(body, content_type, extra, as.integer(res$status))
}

.sm_http_request <- function(url, query, body, headers) {
  st <- .sm_serve_state
  started <- proc.time()[[3]]
  header_text <- if (is.null(headers)) "" else rawToChar(headers)
  newline <- regexpr("\n", header_text, fixed = TRUE)
  method <- if (startsWith(header_text, "Request-Method: ") && newline > 0L) substr(header_text, 17L, newline - 1L) else "GET"
  response <- tryCatch({
    if (length(body) > st$max_payload_bytes) {
      .sm_text_response(413L, sprintf("request body of %d bytes exceeds the %s MB limit (SM_R_MAGIC_MAX_PAYLOAD_MB)",
                                      length(body), format(st$max_payload_mb)))
    } else if (st$mode == "plumber") {
      is_ping <- url == "/ping" && method %in% c("GET", "HEAD")
      lock <- if (is_ping) NULL else .sm_acquire_worker()
      res <- tryCatch(.sm_plumber_response(st$router$call(.sm_plumber_request(method, url, query, body, header_text))),
                      finally = if (!is.null(lock)) filelock::unlock(lock))
      if (is_ping && res[[4]] == 404L) list("", "text/plain", character(), 200L) else res
    } else if (url == "/invocations") {
      if (method != "POST") .sm_text_response(405L, "use POST /invocations")
      else {
        content_type <- .sm_media_type(attr(body, "content-type"))
        if (!nzchar(content_type)) content_type <- .sm_media_type(.sm_header(header_text, "content-type"))
        accept <- .sm_header(header_text, "accept")
        if (grepl(",", accept, fixed = TRUE)) accept <- strsplit(accept, ",", fixed = TRUE)[[1]][[1]]
        .sm_invoke(body, content_type, .sm_media_type(accept))
      }
    } else if (url == "/ping") {
      if (method %in% c("GET", "HEAD")) list("", "text/plain", character(), 200L)
      else .sm_text_response(405L, "use GET /ping")
    } else if (url == "/execution-parameters" && method == "GET") {
      .sm_execution_parameters()
    } else {
      .sm_text_response(404L, sprintf("no route for %s %s: use GET /ping or POST /invocations", method, url))
    }
  }, error = function(e) .sm_text_response(500L, paste("internal error:", conditionMessage(e))))
  .sm_log_request(method, url, response[[4]], started)
  response
}

# --- process management ------------------------------------------------------------------------------

.sm_child_pids <- function(parent = Sys.getpid()) {
  if (dir.exists("/proc/self")) {
    pids <- list.files("/proc", pattern = "^[0-9]+$")
    ppid <- vapply(pids, function(pid) {
      stat <- tryCatch(suppressWarnings(readLines(file.path("/proc", pid, "stat"), warn = FALSE)), error = function(e) "")
      if (!length(stat) || !nzchar(stat[[1]])) return(NA_integer_)
      fields <- strsplit(sub("^.*\\) ", "", stat[[1]]), " ", fixed = TRUE)[[1]]
      if (fields[[1]] == "Z") return(NA_integer_)   # already dead, only waiting to be reaped
      as.integer(fields[[2]])
    }, 0L)
    return(as.integer(pids[!is.na(ppid) & ppid == parent]))
  }
  out <- suppressWarnings(system2("ps", c("-o", "pid=", "-o", "stat=", "--ppid", parent), stdout = TRUE, stderr = FALSE))
  out <- trimws(out)
  out <- out[nzchar(out) & !grepl("^[0-9]+\\s+Z", out)]
  as.integer(sub("\\s.*$", "", out))
}

.sm_stop_children <- function(grace = 2) {
  children <- .sm_child_pids()
  if (!length(children)) return(invisible())
  tools::pskill(children, tools::SIGTERM)
  deadline <- proc.time()[[3]] + grace
  while (length(children <- .sm_child_pids()) && proc.time()[[3]] < deadline) Sys.sleep(0.05)
  if (length(children)) tools::pskill(children, tools::SIGKILL)
  invisible()
}

# Forked connection processes start from the parent's memory: whatever the parent has not compiled or loaded,
# every new connection would redo. With the JIT off, the program's functions are byte-compiled here (our own
# request path gains nothing measurable from it: its time goes to read.csv, predict and write). Then requests
# go through the whole path: that loads exactly the lazy-loaded functions they need (predict methods, model
# frames, read.csv, jsonlite). Measured, the first request of a new connection takes ~8 ms after it, ~20 ms
# without it, ~12 ms after preloading all of stats and utils instead (which cost ~0.5 s of start-up). In
# handler mode those requests are one row of the model's own data (lm, glm and others keep it in $model)
# through the *default* handlers: no user code runs before a real request. No gc() here: measured, it did not
# make a new connection's first request faster (~0.1 s of start-up).
.sm_warm_up <- function(program_functions) {
  env <- globalenv()
  for (name in program_functions) {
    fn <- get0(name, envir = env, inherits = FALSE)
    if (is.function(fn) && !is.primitive(fn)) {
      compiled <- tryCatch(compiler::cmpfun(fn), error = function(e) NULL)
      if (!is.null(compiled)) assign(name, compiled, envir = env)
    }
  }
  for (ns in c("jsonlite", "filelock")) if (requireNamespace(ns, quietly = TRUE)) loadNamespace(ns)
  headers <- charToRaw("Request-Method: GET\nHost: localhost\nAccept: */*\n")
  st <- .sm_serve_state
  st$warming_up <- TRUE
  on.exit(st$warming_up <- FALSE)
  suppressWarnings(try(silent = TRUE, {
    .sm_http_request("/ping", NULL, NULL, headers)
    .sm_http_request("/sm-r-magic-warm-up", NULL, NULL, headers)
    if (st$mode == "handler") .sm_warm_up_invocations(.sm_warm_up_rows(st$model))
    .sm_default_output_fn(data.frame(a = 1), "text/csv")
  }))
  invisible()
}

.sm_warm_up_rows <- function(model) {
  frame <- tryCatch(if (is.list(model) && is.data.frame(model[["model"]])) model[["model"]], error = function(e) NULL)
  if (is.null(frame) || !nrow(frame)) return(data.frame(x = 1))
  frame[1L, , drop = FALSE]
}

# POST rows as CSV and as JSON to /invocations, twice each, with the default handlers.
.sm_warm_up_invocations <- function(rows) {
  st <- .sm_serve_state
  handlers <- mget(c("input_fn", "predict_fn", "output_fn"), envir = st)
  on.exit(list2env(handlers, envir = st))
  st$input_fn <- .sm_default_input_fn
  st$predict_fn <- .sm_default_predict_fn
  st$output_fn <- .sm_default_output_fn
  for (type in c("text/csv", "application/json")) {
    text <- if (type == "text/csv") .sm_csv_text(rows) else as.character(jsonlite::toJSON(rows, digits = NA))
    body <- charToRaw(text)
    attr(body, "content-type") <- type
    headers <- charToRaw(sprintf("Request-Method: POST\nHost: localhost\nContent-Type: %s\nAccept: %s\n", type, type))
    for (i in 1:2) try(.sm_http_request("/invocations", NULL, body, headers), silent = TRUE)
  }
}

# --- main --------------------------------------------------------------------------------------------

sm_serve <- function() {
  st <- .sm_serve_state
  root <- .sm_root()
  model_dir <- file.path(root, "model")
  settings <- tryCatch(list(
    port = as.integer(.sm_env_number("SAGEMAKER_BIND_TO_PORT", 8080)),
    host = Sys.getenv("SM_R_MAGIC_BIND_HOST", "0.0.0.0"),
    workers = as.integer(.sm_env_number("SM_R_MAGIC_WORKERS", max(1L, parallel::detectCores(), na.rm = TRUE))),
    max_payload_mb = .sm_env_number("SM_R_MAGIC_MAX_PAYLOAD_MB", 6)
  ), error = function(e) e)
  if (inherits(settings, "error")) .sm_serve_fail(paste("Error in the serving settings:", conditionMessage(settings)), 2L)
  st$port <- settings$port
  st$max_payload_mb <- settings$max_payload_mb
  st$max_payload_bytes <- settings$max_payload_mb * 1024 * 1024
  st$access_log <- identical(Sys.getenv("SM_R_MAGIC_ACCESS_LOG", ""), "1")
  Sys.setenv(SM_MODEL_DIR = model_dir)

  prepared <- tryCatch(.sm_prepare_model_dir(model_dir), error = function(e) e)
  if (inherits(prepared, "error")) .sm_serve_fail(paste("Error preparing the model:", conditionMessage(prepared)), 2L)
  code <- .sm_find_program(model_dir)
  setwd(code$dir)
  # Per-job R packages (--packages, renv.lock/DESCRIPTION beside the code), as for jobs.
  installed <- tryCatch({ .sm_install_job_packages(code$dir); TRUE }, error = function(e) e)
  if (inherits(installed, "error")) .sm_serve_fail(paste("Error installing R packages:", conditionMessage(installed)), 2L)
  .sm_log("loading model: ", file.path(code$dir, code$program), ", model dir ", model_dir)
  ours <- ls(globalenv(), all.names = TRUE)
  program <- .sm_load_program(code)
  program$functions <- setdiff(ls(globalenv(), all.names = TRUE), ours)
  st$mode <- program$mode
  if (program$mode == "handler") {
    user_fn <- function(name, default) {
      if (exists(name, envir = globalenv(), mode = "function", inherits = FALSE)) get(name, envir = globalenv()) else default
    }
    st$input_fn <- user_fn("input_fn", .sm_default_input_fn)
    st$predict_fn <- user_fn("predict_fn", .sm_default_predict_fn)
    st$output_fn <- user_fn("output_fn", .sm_default_output_fn)
    loaded <- .sm_capture(get("model_fn", envir = globalenv()), model_dir, .label = "model_fn(model_dir)")
    if (!is.null(loaded$error)) .sm_serve_fail(.sm_captured_error_lines("in model_fn", loaded))
    st$model <- loaded$value
  } else {
    st$router <- program$router
    if (identical(Sys.getenv("SM_R_MAGIC_PLUMBER_NATIVE", ""), "1")) {
      .sm_log("serving the plumber router with plumber/httpuv on ", settings$host, ":", settings$port, " (1 worker)")
      run <- st$plumber_run
      environment(run) <- program$router$.__enclos_env__
      run(host = settings$host, port = settings$port)
      quit(save = "no", status = 0)
    }
  }

  if (!requireNamespace("Rserve", quietly = TRUE)) .sm_serve_fail("the Rserve R package is not installed (r-cran-rserve)", 2L)
  workers <- settings$workers
  if (workers > 0L && !requireNamespace("filelock", quietly = TRUE)) {
    .sm_log("filelock is not installed: the number of concurrent invocations is not limited")
    workers <- 0L
  }
  st$slots <- character()
  if (workers > 0L) {
    slot_dir <- file.path(tempdir(), "sm-workers")
    dir.create(slot_dir, showWarnings = FALSE)
    st$slots <- file.path(normalizePath(slot_dir), sprintf("slot-%d", seq_len(workers)))
    file.create(st$slots)
  }
  .sm_warm_up(program$functions)
  if (program$mode == "handler") {   # the compiled versions of the program's functions
    st$input_fn <- user_fn("input_fn", .sm_default_input_fn)
    st$predict_fn <- user_fn("predict_fn", .sm_default_predict_fn)
    st$output_fn <- user_fn("output_fn", .sm_default_output_fn)
  }
  assign(".http.request", .sm_http_request, envir = globalenv())
  local_only <- settings$host %in% c("127.0.0.1", "localhost", "::1")
  config_file <- file.path(tempdir(), "Rserve.conf")
  file.create(config_file)   # never read the machine's /etc/Rserve.conf
  .sm_log(sprintf("serving %s on %s:%d with %s workers", if (program$mode == "plumber") "the plumber router" else
    code$program, settings$host, settings$port, if (workers > 0L) workers else "unlimited"))
  started <- tryCatch(
    Rserve::run.Rserve(http.port = settings$port, qap = FALSE, remote = if (local_only) "disable" else "enable",
                       keep.alive = "enable", http.raw.body = "enable", config.file = config_file),
    error = function(e) e)
  if (inherits(started, "error")) {
    .sm_stop_children()
    .sm_serve_fail(sprintf("Error: could not serve on %s:%d: %s", settings$host, settings$port, conditionMessage(started)))
  }
  .sm_log("shutting down")
  .sm_stop_children()
  # Never return to the caller: entrypoint.R is being read by R's REPL and forked children share its file
  # offset, so reading on could run stray lines of it.
  quit(save = "no", status = 0)
}
