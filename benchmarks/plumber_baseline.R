# The seed's approach, as the baseline of bench_serving.py: a plain plumber (httpuv) app serving an lm.
#   Rscript plumber_baseline.R MODEL_RDS PORT
# POST /invocations takes CSV with a header row and answers one prediction per line (text/csv), like the
# container's default handlers; the body is read from req$bodyRaw (plumber 1.2.1's `@parser none` fails
# on Debian's stringi, DESIGN.md section 3).
args <- commandArgs(trailingOnly = TRUE)
model <- readRDS(args[[1]])
port <- as.integer(args[[2]])
suppressPackageStartupMessages(library(plumber))

predict_csv <- function(req) {
  data <- read.csv(text = rawToChar(req$bodyRaw), header = TRUE)
  paste0(paste(as.character(predict(model, newdata = data)), collapse = "\n"), "\n")
}

app <- pr()
app <- pr_get(app, "/ping", function() "", serializer = serializer_text())
app <- pr_post(app, "/invocations", predict_csv, serializer = serializer_content_type("text/csv"))
pr_run(app, host = "127.0.0.1", port = port, docs = FALSE, quiet = TRUE)
