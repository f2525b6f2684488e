# R CMD check entry point. The suite runs the local backend: it needs the Python package sm_r_magic
# (SM_R_MAGIC_PYTHON=/path/to/python) and Rscript; it skips when they are missing.
library(testthat)
library(smrmagic)

test_check("smrmagic")
