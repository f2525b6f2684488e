"""The docker backend with the real shared image: the same requests as the local backend, run in the image.

Needs a Docker engine (scripts/ensure-docker.sh) and a base image (`make image` makes one without a
registry); the image itself is (re)built from the package's container folder once per session, which takes
~1 s when every layer is cached. Skipped with the reason when no engine answers.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request

import pytest

from sm_r_magic import api
from sm_r_magic.backends import docker as docker_backend
from sm_r_magic.errors import SmRMagicError

from .conftest import run_cell
from .support.docker_engine import IMAGE, containers, require_engine, require_image
from .support.rlang import r_tokens

pytestmark = pytest.mark.docker

PREP = '''
df <- read.csv(file.path(sm_input("raw"), "mtcars.csv"))
idx <- seq_len(nrow(df)) %% 4 != 0
write.csv(df[idx, ], file.path(sm_output("train"), "train.csv"), row.names = FALSE)
write.csv(df[!idx, ], file.path(sm_output("test"), "test.csv"), row.names = FALSE)
cat("R", R.version.string, "\\n")
'''

TRAIN = '''
df <- read.csv(file.path(sm_channel("train"), "train.csv"))
model <- lm(as.formula(sm_hp("formula")), data = df)
saveRDS(model, file.path(sm_model_dir(), "model.rds"))
cat("train_rmse:", format(sqrt(mean(residuals(model)^2)), digits = 17), "\\n")
'''

# The seed's style: hard-coded /opt/ml paths, served by /opt/ml/model/code/deploy.R (a plumber router).
SEED_TRAIN = '''
df <- read.csv("/opt/ml/input/data/train/mtcars.csv")
model <- lm(mpg ~ wt + hp, data = df)
saveRDS(model, "/opt/ml/model/model.rds")
cat("saved /opt/ml/model/model.rds\\n")
'''
SEED_DEPLOY = '''library(plumber)
app <- plumb("/opt/ml/model/code/endpoints.R")
app$run(host = "0.0.0.0", port = 8080)
'''
SEED_ENDPOINTS = r'''
model <- readRDS("/opt/ml/model/model.rds")

#* @get /ping
function() ""

#* @post /invocations
#* @serializer json list(digits = NA)
function(req) {
  df <- read.csv(text = req$postBody)
  as.numeric(predict(model, newdata = df))
}
'''
NEWDATA_CSV = "wt,hp\n2.5,120\n3.1,200\n1.8,95\n4.0,150\n"


def assert_no_container_left(timeout=60, **which):
    """No container left behind (by name or job label). `docker run --rm` removes a container once it has
    stopped, and on a loaded machine that removal can lag behind `docker stop` returning: wait for it,
    bounded, instead of asserting at once."""
    deadline = time.monotonic() + timeout
    while True:
        left = containers(**which)
        if not left:
            return
        assert time.monotonic() < deadline, f"containers still there {timeout} s later: {left}"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def docker_image():
    return require_image()


@pytest.fixture
def docker_settings(settings, docker_image):
    settings.image = IMAGE
    return settings


def model_coefficients(model_tar, tmp_path, tag):
    dest = tmp_path / f"model-{tag}"
    dest.mkdir()
    with tarfile.open(model_tar) as tar:
        tar.extractall(dest)
    return r_tokens(f'm <- readRDS("{dest}/model.rds"); cat(format(coef(m), digits = 17), sep = "\\n")')


def run_foundation_flow(backend, csv):
    prep = api.processing(PREP, backend=backend, name="prep", inputs={"raw": str(csv)},
                          outputs={"train": None, "test": None}, progress="none")
    job = api.train(TRAIN, backend=backend, name="mtcars-lm", channels={"train": prep.outputs["train"]},
                    hyperparameters={"formula": "mpg ~ wt + hp"}, progress="none")
    return prep, job


def test_foundation_example_gives_the_same_results_in_the_image(docker_settings, mtcars_csv, tmp_path):
    local_prep, local_job = run_foundation_flow("local", mtcars_csv)
    prep, job = run_foundation_flow("docker", mtcars_csv)
    assert prep.status == job.status == "Completed"
    assert prep.backend_name == job.backend_name == "docker"
    assert "/docker-jobs/" in job.local_folder  # docker jobs keep their own folders beside the local ones
    # Same R in the image as here (Debian's R 4.2.2): same split, same coefficients to the last digit.
    assert prep.logs().split("R ", 1)[1].splitlines()[0] == local_prep.logs().split("R ", 1)[1].splitlines()[0]
    for name in ("train", "test"):
        csv = f"{name}.csv"
        with open(os.path.join(prep.outputs[name], csv)) as a, open(os.path.join(local_prep.outputs[name], csv)) as b:
            assert a.read() == b.read()
    assert model_coefficients(job.model_data, tmp_path, "docker") == \
        model_coefficients(local_job.model_data, tmp_path, "local")
    rmse = job.logs().split("train_rmse:")[1].split()[0]
    assert rmse == local_job.logs().split("train_rmse:")[1].split()[0]
    with tarfile.open(job.model_data) as tar:
        assert {"model.rds", "code/train.R"} <= set(tar.getnames())
    # What the container wrote into the job folder belongs to this user, and no container is left.
    for dirpath, _, filenames in os.walk(os.path.join(job.local_folder, "opt", "ml")):
        for name in filenames:
            assert os.stat(os.path.join(dirpath, name)).st_uid == os.getuid()
    assert_no_container_left(label_value=job.name)
    assert_no_container_left(label_value=prep.name)


def test_seed_style_job_runs_unchanged_and_its_model_serves_in_the_image(docker_settings, mtcars_csv, tmp_path):
    code = tmp_path / "seed"
    code.mkdir()
    (code / "deploy.R").write_text(SEED_DEPLOY)
    (code / "endpoints.R").write_text(SEED_ENDPOINTS)
    job = api.train(SEED_TRAIN, backend="docker", name="seed", channels={"train": str(mtcars_csv)},
                    files=[str(code / "deploy.R"), str(code / "endpoints.R")], progress="none")
    assert job.status == "Completed", job.failure_reason
    assert "saved /opt/ml/model/model.rds" in job.logs()
    with tarfile.open(job.model_data) as tar:
        assert {"model.rds", "code/deploy.R", "code/endpoints.R"} <= set(tar.getnames())

    # Served like SageMaker serves it: model.tar.gz extracted at /opt/ml/model, `docker run IMAGE serve`,
    # /opt/ml/model/code/deploy.R found by the seed convention.
    model_dir = tmp_path / "served-model"
    model_dir.mkdir()
    with tarfile.open(job.model_data) as tar:
        tar.extractall(model_dir)
    name = f"smr-test-seed-{os.getpid()}"
    run = subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "-p", "127.0.0.1::8080",
                          "--mount", f"type=bind,source={model_dir},target=/opt/ml/model", IMAGE, "serve"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    try:
        port = subprocess.run(["docker", "port", name, "8080/tcp"], capture_output=True, text=True,
                              check=True).stdout.split(":")[-1].strip()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, subprocess.run(["docker", "logs", name], capture_output=True,
                                                               text=True).stderr
            time.sleep(0.2)
        req = urllib.request.Request(url + "/invocations", data=NEWDATA_CSV.encode(),
                                     headers={"Content-Type": "text/csv"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            predictions = json.loads(resp.read())
    finally:
        subprocess.run(["docker", "stop", "-t", "5", name], capture_output=True)
    expected = r_tokens(f'df <- read.csv("{mtcars_csv}"); m <- lm(mpg ~ wt + hp, df); '
                       f'cat(format(predict(m, read.csv(text = "{NEWDATA_CSV}")), digits = 17), sep = "\\n")')
    assert predictions == pytest.approx([float(x) for x in expected], rel=1e-12)
    assert_no_container_left(name=name)


def test_stop_sends_sigterm_to_r_and_removes_the_container(docker_settings):
    job = api.train('cat("sleeping\\n"); Sys.sleep(120)', backend="docker", name="sleepy", wait=False,
                    progress="none")
    deadline = time.monotonic() + 60
    while "sleeping" not in job.logs():
        assert time.monotonic() < deadline and not job.done, job.logs()
        time.sleep(0.1)
    assert containers(label_value=job.name) == [docker_backend.container_name(job.name)]
    job.stop()
    assert job.status == "Stopped"
    # R ended from SIGTERM itself (128 + 15) within the grace period (RMagic.stop_timeout = 10 s), not from
    # docker stop's SIGKILL after it (137): the image's tini forwards SIGTERM to R. (The exit code says so
    # whatever the machine's speed; how long stopping takes is not asserted.)
    assert job.describe()["ExitCode"] == 143
    assert_no_container_left(label_value=job.name)


def test_r_error_fails_the_job_with_the_r_message(docker_settings):
    job = api.train('f <- function(x) stop("no model for ", x)\nf("mpg")', backend="docker", name="broken",
                    progress="none", raise_on_failure=False)
    assert job.status == "Failed"
    assert "no model for mpg" in job.failure_reason and "Traceback" in job.failure_reason
    assert job.describe()["ExitCode"] == 1


def test_docker_run_failure_names_docker_not_r(docker_settings, monkeypatch):
    monkeypatch.setenv("SM_R_MAGIC_DOCKER_RUN_ARGS", "--cpus 99999")
    job = api.train("1", backend="docker", name="bad-run", progress="none", raise_on_failure=False)
    assert job.status == "Failed"
    assert job.failure_reason.startswith("docker run failed (the container did not start): ")
    assert "cpu" in job.failure_reason.lower()


def test_engine_missing_is_one_line(shell, local_root, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/sm-r-magic-no-docker-here.sock")
    result, error = run_cell(shell, "r_train", "--backend docker --name x", "1")
    assert type(error).__name__ == "UsageError"
    message = str(error)
    assert "\n" not in message
    assert message.startswith("the Docker engine is not running (")
    assert message.endswith("start Docker or use --backend local")
    assert not (local_root / "docker-jobs").exists()


def test_image_missing_is_one_line(settings, monkeypatch):
    require_engine()
    settings.image = "sm-r-magic:no-such-tag"
    with pytest.raises(SmRMagicError) as info:
        api.train("1", backend="docker")
    message = str(info.value)
    assert "\n" not in message
    assert "sm-r-magic:no-such-tag is not in the local Docker engine" in message
    assert "make image" in message and "sm-r-magic image build" in message


def test_docker_client_missing_is_one_line(settings, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SmRMagicError, match=r"^Docker is not installed here .*use --backend local$"):
        api.train("1", backend="docker")


def test_launch_command(settings, tmp_path, monkeypatch):
    """The exact docker run command: mounts, user, environment, processing entrypoint, stop/kill."""
    from sm_r_magic import spec
    from sm_r_magic.backends import get_backend
    from sm_r_magic.backends.jobfolder import JobFolder

    monkeypatch.setattr(docker_backend, "docker_cli", lambda: "/usr/bin/docker")  # the launcher's client
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setattr(os, "getgid", lambda: 1001)
    repo = tmp_path / "repo"
    repo.mkdir()
    be = get_backend("docker", settings)
    request = spec.processing_request(job_name="p-1", image="img:1", code_uri="/x/sourcedir.tar.gz", inputs={},
                                      outputs={}, environment={"A": "1 2", "SM_R_MAGIC_R_REPOS": f"file://{repo}"})
    folder = JobFolder(os.path.join(be.jobs.jobs_dir, "p-1"))
    launch = be.launcher.job_launch("processing", request, folder)
    root = str(settings.local_root)
    argv = launch["argv"]
    assert argv[:7] == ["/usr/bin/docker", "run", "--rm", "--name", "smr-p-1", "--label", "sm-r-magic.job=p-1"]
    text = " ".join(argv)
    assert f"type=bind,source={root}/sourcedir,target={root}/sourcedir,readonly" in text
    assert f"type=bind,source={root}/docker-r-library,target=/usr/local/lib/R/sm-cache" in text
    assert f"type=bind,source={repo},target={repo},readonly" in text
    assert f"type=bind,source={folder.root},target=/opt/ml" in text
    assert "--user 1000:1001 -e HOME=/tmp" in text
    assert ["-e", "A=1 2"] == argv[argv.index("A=1 2") - 1: argv.index("A=1 2") + 1]
    assert "PROCESSING_JOB_NAME=p-1" in argv and "SAGEMAKER_PROGRAM=process.R" in argv
    assert argv[-4:] == ["--entrypoint", "/opt/sm_r_magic/entrypoint.sh", "img:1", "process"]
    assert launch["stop_argv"] == ["/usr/bin/docker", "stop", "-t", "10", "smr-p-1"]
    assert launch["kill_argv"] == ["/usr/bin/docker", "rm", "-f", "smr-p-1"]


def _python_for_uid(uid):
    """A python that user `uid` can run with this package importable, or None."""
    candidates = ["/usr/bin/python3", sys.executable]
    site = [p for p in sys.path if p.endswith("site-packages")]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo] + site))
    for python in candidates:
        probe = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", python, "-c",
                                "import subprocess, sys, traitlets, sm_r_magic.api; subprocess.run([sys.executable, '-c', '1'], "
                                "check=True); print(sys.version_info[:2])"],
                               capture_output=True, text=True, env=env)
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(sys.version_info[:2])):
            return python, env
    return None, None


@pytest.fixture
def shared_tmp():
    """A folder another user can reach (pytest's tmp_path is under a root-only folder)."""
    import tempfile

    path = tempfile.mkdtemp(prefix="sm-r-magic-uid-test-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_runs_as_the_host_user_and_files_stay_theirs(docker_image, shared_tmp, mtcars_csv):
    """A non-root notebook user (uid 1000 in the docker group): the container runs as that uid, so all that
    R writes into the job folder and the package cache is theirs."""
    if os.getuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as another user")
    try:
        import grp

        docker_gid = grp.getgrnam("docker").gr_gid
    except KeyError:
        pytest.skip("no docker group to give the test user access to the engine")
    uid = 1000
    python, env = _python_for_uid(uid)
    if not python:
        pytest.skip(f"no python that uid {uid} can run with the same version and this package")
    home = shared_tmp / "home"
    home.mkdir()
    shutil.copy(mtcars_csv, home / "mtcars.csv")
    for path in (home, home / "mtcars.csv"):
        os.chown(path, uid, uid)
    script = (
        "import sm_r_magic.api as api\n"
        "job = api.processing('df <- read.csv(file.path(sm_input(\"raw\"), \"mtcars.csv\"))\\n"
        "write.csv(df, file.path(sm_output(\"out\"), \"copy.csv\"))\\nsystem(\"id -u\")', backend='docker', "
        f"inputs={{'raw': '{home}/mtcars.csv'}}, outputs={{'out': None}}, progress='none')\n"
        "print(job.status, job.local_folder)\n"
    )
    env = dict(env, HOME=str(home), SM_R_MAGIC_LOCAL_ROOT=str(home / "root"), SM_R_MAGIC_IMAGE=IMAGE)
    proc = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={docker_gid}", python, "-c",
                           script], capture_output=True, text=True, env=env, cwd=str(home), timeout=120)
    assert proc.returncode == 0, proc.stderr
    status, folder = proc.stdout.split()[-2:]
    assert status == "Completed"
    assert open(os.path.join(folder, "logs.txt")).read().split()[0] == str(uid)
    not_theirs = [os.path.join(d, n) for d, dirs, files in os.walk(home / "root") for n in dirs + files
                  if os.lstat(os.path.join(d, n)).st_uid != uid]
    assert not_theirs == []


# -- serving -----------------------------------------------------------------------------------------------

INFERENCE = 'model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))\n'
SERVE_TRAIN = '''
df <- read.csv(file.path(sm_channel("train"), "mtcars.csv"))
saveRDS(lm(mpg ~ wt + hp, data = df), file.path(sm_model_dir(), "model.rds"))
'''


def deploy_requests(name, model_data, image=IMAGE):
    from sm_r_magic import spec

    return {"model": spec.model_request(model_name=f"{name}-model", image=image, model_data=model_data),
            "endpoint_config": spec.endpoint_config_request(config_name=f"{name}-config", model_name=f"{name}-model"),
            "endpoint": spec.endpoint_request(endpoint_name=name, config_name=f"{name}-config")}


def wait_in_service(predictor, timeout=60):
    deadline = time.monotonic() + timeout
    while predictor.status == "Creating":
        assert time.monotonic() < deadline, predictor.logs()
        time.sleep(0.05)
    return predictor.status


def test_serving_example_predicts_in_the_image_as_r_does(docker_settings, mtcars_csv, tmp_path):
    from sm_r_magic.backends import get_backend

    (tmp_path / "inference.R").write_text(INFERENCE)
    job = api.train(SERVE_TRAIN, backend="docker", name="served", channels={"train": str(mtcars_csv)},
                    files=[str(tmp_path / "inference.R")], progress="none")
    assert job.status == "Completed", job.failure_reason
    be = get_backend("docker", docker_settings)
    predictor = be.deploy(deploy_requests("served-ep", job.model_data))
    try:
        assert wait_in_service(predictor) == "InService", predictor.failure_reason
        assert predictor.url.startswith("http://127.0.0.1:")  # start-to-ping time: benchmarks/bench_docker.py
        predictions = predictor.predict(NEWDATA_CSV)
        assert predictor.predict({"wt": [2.5, 3.1], "hp": [120, 200]}) == predictions[:2]
        expected = r_tokens(f'df <- read.csv("{mtcars_csv}"); m <- lm(mpg ~ wt + hp, df); '
                           f'cat(format(predict(m, read.csv(text = "{NEWDATA_CSV}")), digits = 17), sep = "\\n")')
        assert predictions == pytest.approx([float(x) for x in expected], rel=1e-12)
        assert "serving inference.R on 0.0.0.0:8080" in predictor.logs()
        assert [p.endpoint_name for p in be.list_endpoints()] == ["served-ep"]
        # the local backend serves the same model with the same answers
        local = get_backend("local", docker_settings).deploy(deploy_requests("served-local", job.model_data))
        try:
            assert wait_in_service(local) == "InService", local.failure_reason
            assert local.predict(NEWDATA_CSV) == predictions
        finally:
            local.delete()
    finally:
        predictor.delete()
    assert_no_container_left(name=docker_backend.container_name("served-ep"))
    with pytest.raises(SmRMagicError, match="no docker endpoint named served-ep"):
        be.describe_endpoint("served-ep")


def test_failing_model_fn_makes_the_endpoint_failed_with_the_r_error(docker_settings, tmp_path):
    from sm_r_magic.backends import get_backend

    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.R").write_text('model_fn <- function(model_dir) stop("no model.rds here")\n')
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz", format=tarfile.GNU_FORMAT) as tar:
        tar.add(model / "code", arcname="code")
    be = get_backend("docker", docker_settings)
    predictor = be.deploy(deploy_requests("broken-ep", str(tmp_path / "model.tar.gz")))
    try:
        assert wait_in_service(predictor) == "Failed"
        assert "no model.rds here" in predictor.failure_reason
        with pytest.raises(SmRMagicError, match="broken-ep is Failed, not InService"):
            predictor.predict(NEWDATA_CSV)
    finally:
        predictor.delete()
    assert_no_container_left(name=docker_backend.container_name("broken-ep"))
