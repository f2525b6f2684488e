# Per-job R packages: entrypoint.R sources this file at job start and calls sm_install_job_packages(code_dir).
#
# Wanted packages:
#   * SM_R_MAGIC_PACKAGES           "pkg1,pkg2" (the magics' --packages)
#   * <code_dir>/renv.lock          the names under "Packages" (versions are not pinned: what is missing
#                                   is installed at the repository's current version)
#   * <code_dir>/DESCRIPTION        Depends and Imports (without "R" and version constraints)
# Only what no library in .libPaths() has is installed, with its dependencies, from SM_R_MAGIC_R_REPOS
# (space- or comma-separated repository URLs; a plain path means file://; default https://cloud.r-project.org)
# into the cached library SM_R_MAGIC_R_LIBRARY (default /usr/local/lib/R/sm-cache in the image). That
# library is prepended to .libPaths(), so the job (and the next job, which finds the packages there and
# installs nothing) loads them; install.packages() in user code lands there too, from the same repository.
# A package the repository does not have fails the job before any user code runs:
#   package 'x' is not available from <repo>
# Concurrent jobs sharing the library take turns (a lock folder in the library).

.sm_pkg_base <- c("base", "compiler", "datasets", "graphics", "grDevices", "grid", "methods", "parallel",
                  "splines", "stats", "stats4", "tcltk", "tools", "utils")

.sm_pkg_log <- function(...) message("[sm-r-magic] ", ...)

.sm_pkg_split <- function(text) {
  parts <- trimws(unlist(strsplit(text, "[,[:space:]]+")))
  parts[nzchar(parts)]
}

.sm_pkg_repos <- function() {
  repos <- .sm_pkg_split(Sys.getenv("SM_R_MAGIC_R_REPOS", ""))
  if (!length(repos)) repos <- "https://cloud.r-project.org"
  # A plain absolute path is a local repository.
  repos <- ifelse(grepl("^/", repos), paste0("file://", repos), sub("/+$", "", repos))
  stats::setNames(repos, paste0("repo", seq_along(repos)))
}

# A SageMaker warm pool (--keep-alive) keeps SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY with its instance: packages
# installed there are found by the next job on that instance, which then installs nothing.
.sm_pkg_library <- function() {
  warm <- Sys.getenv("SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY", "")
  if (nzchar(warm) && dir.exists(warm) && file.access(warm, 2L) == 0L) {
    return(file.path(warm, "sm-r-magic", paste0("library-R", R.version$major, ".", sub("\\..*", "", R.version$minor))))
  }
  lib <- Sys.getenv("SM_R_MAGIC_R_LIBRARY", "")
  if (nzchar(lib)) return(path.expand(lib))
  image_lib <- "/usr/local/lib/R/sm-cache"
  if (dir.exists(image_lib) && file.access(image_lib, 2L) == 0L) return(image_lib)
  file.path(tools::R_user_dir("sm-r-magic", "cache"),
            paste0("library-R", R.version$major, ".", sub("\\..*", "", R.version$minor)))
}

# Package names of a DESCRIPTION's Depends and Imports fields.
.sm_pkg_from_description <- function(path) {
  fields <- read.dcf(path, fields = c("Depends", "Imports"))[1, ]
  fields <- fields[!is.na(fields)]
  if (!length(fields)) return(character())
  entries <- trimws(unlist(strsplit(fields, ",")))
  names <- trimws(sub("\\(.*$", "", entries))
  names[nzchar(names) & names != "R"]
}

.sm_pkg_from_renv_lock <- function(path) {
  lock <- jsonlite::read_json(path, simplifyVector = FALSE)
  names(lock$Packages)
}

# What the job asks for, with where each request came from (for the log).
sm_job_package_requests <- function(code_dir) {
  wanted <- list(env = .sm_pkg_split(Sys.getenv("SM_R_MAGIC_PACKAGES", "")))
  if (!is.null(code_dir) && nzchar(code_dir)) {
    lock <- file.path(code_dir, "renv.lock")
    if (file.exists(lock)) {
      wanted[["renv.lock"]] <- tryCatch(.sm_pkg_from_renv_lock(lock), error = function(e) {
        stop("renv.lock is not valid JSON: ", conditionMessage(e), call. = FALSE)
      })
    }
    desc <- file.path(code_dir, "DESCRIPTION")
    if (file.exists(desc)) {
      wanted[["DESCRIPTION"]] <- tryCatch(.sm_pkg_from_description(desc), error = function(e) {
        stop("DESCRIPTION cannot be read: ", conditionMessage(e), call. = FALSE)
      })
    }
  }
  wanted
}

.sm_pkg_installed <- function(pkgs) {
  vapply(pkgs, function(p) length(find.package(p, quiet = TRUE)) > 0L, logical(1))
}

.sm_pkg_quote <- function(pkgs) paste0("'", pkgs, "'", collapse = ", ")

# The repositories' package index; an unreachable repository is an error naming it.
.sm_pkg_index <- function(repos) {
  problems <- character()
  db <- withCallingHandlers(
    tryCatch(utils::available.packages(repos = repos, type = "source"),
             error = function(e) { problems <<- c(problems, conditionMessage(e)); NULL }),
    warning = function(w) {
      problems <<- c(problems, conditionMessage(w))
      invokeRestart("muffleWarning")
    }
  )
  if (is.null(db) || (!nrow(db) && length(problems))) {
    stop(sprintf("could not read the package index of %s: %s", paste(repos, collapse = " "),
                 paste(unique(problems), collapse = "; ")), call. = FALSE)
  }
  db
}

# A lock folder in the library so that concurrent jobs sharing it do not install the same package at once.
# A lock older than `stale` seconds (a job killed while installing) is broken.
.sm_pkg_with_lock <- function(lib, expr, timeout = 1800, stale = 1800) {
  lock <- file.path(lib, ".sm-r-magic-install.lock")
  waited <- FALSE
  started <- Sys.time()
  repeat {
    if (dir.create(lock, showWarnings = FALSE)) break
    age <- as.numeric(difftime(Sys.time(), file.mtime(lock), units = "secs"))
    if (!is.na(age) && age > stale) {
      .sm_pkg_log("breaking a stale package-install lock (", round(age), " s old): ", lock)
      unlink(lock, recursive = TRUE)
      next
    }
    if (!waited) .sm_pkg_log("waiting for another job that is installing packages into ", lib)
    waited <- TRUE
    if (as.numeric(difftime(Sys.time(), started, units = "secs")) > timeout) {
      stop(sprintf("timed out after %d s waiting for the package-install lock %s", timeout, lock), call. = FALSE)
    }
    Sys.sleep(0.5)
  }
  on.exit(unlink(lock, recursive = TRUE), add = TRUE)
  force(expr)
}

sm_install_job_packages <- function(code_dir = NULL) {
  repos <- .sm_pkg_repos()
  options(repos = repos)  # install.packages() in user code uses the same repository (and the cached library)
  lib <- .sm_pkg_library()
  wanted <- sm_job_package_requests(code_dir)
  pkgs <- setdiff(unique(unlist(wanted, use.names = FALSE)), .sm_pkg_base)
  if (dir.exists(lib) || length(pkgs)) {
    if (!dir.exists(lib) && !dir.create(lib, recursive = TRUE, showWarnings = FALSE)) {
      stop(sprintf("cannot create the R package library %s (SM_R_MAGIC_R_LIBRARY)", lib), call. = FALSE)
    }
    .libPaths(c(lib, .libPaths()))
  }
  if (!length(pkgs)) return(invisible(character()))
  sources <- names(wanted)[lengths(wanted) > 0L]
  sources[sources == "env"] <- "--packages"
  missing <- pkgs[!.sm_pkg_installed(pkgs)]
  if (!length(missing)) {
    .sm_pkg_log("R packages already installed: ", paste(pkgs, collapse = ", "), " (library ", lib, ")")
    return(invisible(character()))
  }
  repo_text <- paste(unname(repos), collapse = " ")
  .sm_pkg_with_lock(lib, {
    missing <- missing[!.sm_pkg_installed(missing)]  # another job may have installed them meanwhile
    if (length(missing)) {
      .sm_pkg_check_available(missing, repos, repo_text)
      .sm_pkg_install(missing, lib, repos, repo_text, sources)
    }
  })
  invisible(missing)
}

# Stop with one line when a package, or a dependency it needs that is not installed, is not in the repository.
.sm_pkg_check_available <- function(missing, repos, repo_text) {
  db <- .sm_pkg_index(repos)
  unknown <- setdiff(missing, rownames(db))
  if (length(unknown) == 1L) {
    stop(sprintf("package '%s' is not available from %s (check the name, or set RMagic.r_repos / SM_R_MAGIC_R_REPOS)",
                 unknown, repo_text), call. = FALSE)
  } else if (length(unknown)) {
    stop(sprintf("packages %s are not available from %s (check the names, or set RMagic.r_repos / SM_R_MAGIC_R_REPOS)",
                 .sm_pkg_quote(unknown), repo_text), call. = FALSE)
  }
  deps <- unique(unlist(tools::package_dependencies(missing, db = db, which = c("Depends", "Imports", "LinkingTo"),
                                                   recursive = TRUE), use.names = FALSE))
  deps <- setdiff(deps, c(.sm_pkg_base, rownames(db)))
  deps <- deps[!.sm_pkg_installed(deps)]
  if (length(deps)) {
    stop(sprintf("%s need%s %s, which %s not available from %s", .sm_pkg_quote(missing),
                 if (length(missing) == 1L) "s" else "", .sm_pkg_quote(deps),
                 if (length(deps) == 1L) "is" else "are", repo_text), call. = FALSE)
  }
}

.sm_pkg_install <- function(missing, lib, repos, repo_text, sources) {
  .sm_pkg_log("installing R packages: ", paste(missing, collapse = ", "), " (from ", repo_text, "; asked for by ",
              paste(sources, collapse = ", "), ") into ", lib)
  started <- Sys.time()
  # Parallel installs run through make, which the image does not have (no compilers either: packages
  # with C/C++/Fortran code need an image built with EXTRA_APT_PACKAGES="r-base-dev").
  ncpus <- if (nzchar(Sys.which(Sys.getenv("MAKE", "make")))) max(1L, parallel::detectCores(), na.rm = TRUE) else 1L
  utils::install.packages(missing, lib = lib, repos = repos, type = "source", Ncpus = ncpus, quiet = FALSE,
                          dependencies = c("Depends", "Imports", "LinkingTo"))
  failed <- missing[!.sm_pkg_installed(missing)]
  if (length(failed)) {
    stop(sprintf("R package%s %s failed to install from %s (see the install output above)",
                 if (length(failed) == 1L) "" else "s", .sm_pkg_quote(failed), repo_text), call. = FALSE)
  }
  .sm_pkg_log(sprintf("installed R packages: %s in %.1f s", paste(missing, collapse = ", "),
                      as.numeric(difftime(Sys.time(), started, units = "secs"))))
}
