"""Parity: the requests the sagemaker backend sent run unchanged in our container.

Each test submits a cell with the sagemaker backend to moto, takes the CreateTrainingJob /
CreateProcessingJob / CreateModel request exactly as botocore sent it (captured with a botocore event hook;
moto's Describe* drops fields such as Environment), lays out /opt/ml from it as SageMaker would
(sm_r_magic.backends.jobfolder: config files, channels and inputs downloaded from the moto S3 by the
container's own fetch.py), runs the container's entrypoint with this machine's R, and checks the result
against R's own computation. The R entrypoint downloads sourcedir.tar.gz itself (s3://
sagemaker_submit_directory) and serving extracts the model.tar.gz uploaded to moto S3.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from sm_r_magic import api, aws, spec
from sm_r_magic.backends import jobfolder as jf
from sm_r_magic.paths import CONTAINER_DIR, ENTRYPOINT

from .support.moto_server import IMAGE, ROLE, capture
from .support.rlang import r_numbers

SERVE_R = os.path.join(CONTAINER_DIR, "serve.R")

TRAIN = '''
df <- read.csv(file.path(sm_channel("train"), "mtcars.csv"))
extra <- read.csv(file.path(sm_channel("extra"), "sub", "weights.csv"))
stopifnot(nrow(extra) == 2)
model <- lm(as.formula(sm_hp("formula")), data = df)
saveRDS(model, file.path(sm_model_dir(), "model.rds"))
writeLines(format(coef(model), digits = 17), file.path(sm_model_dir(), "coef.txt"))
cat("alpha is", sm_hp("alpha"), "\\n")
'''

INFERENCE = '''
model_fn <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))
'''

PROCESS = '''
df <- read.csv(file.path(sm_input("raw"), "mtcars.csv"))
heavy <- df[df$wt > 3, ]
write.csv(heavy, file.path(sm_output("heavy"), "heavy.csv"), row.names = FALSE)
writeLines(as.character(nrow(heavy)), file.path(sm_output("count"), "n.txt"))
'''

NEWDATA = "wt,hp\n2.5,120\n3.1,200\n"


@pytest.fixture(scope="module")
def container_python(tmp_path_factory):
    """The Python the R entrypoint runs fetch.py with (SM_R_MAGIC_PYTHON).

    R exports LD_LIBRARY_PATH=/usr/lib/R/lib:/usr/lib/x86_64-linux-gnu:...; a Python built with a shared
    libpython elsewhere (pyenv here) then loads Debian's libpython3.11 and fails to import ssl. In the image
    the Python is Debian's own, so the wrapper only restores this machine's library path."""
    wrapper = tmp_path_factory.mktemp("python") / "python"
    wrapper.write_text(f"#!/bin/sh\nunset LD_LIBRARY_PATH\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def run_container(argv, folder, environment, job_env, python):
    env = dict(os.environ)
    env.update(environment)
    env.update(job_env)
    env.update(SM_R_MAGIC_ROOT=folder.root, SM_R_MAGIC_PYTHON=python)
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=folder.path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_training_request_runs_in_the_container(sm, moto_server, mtcars_csv, tmp_path, container_python):
    extra = tmp_path / "extra"
    (extra / "sub").mkdir(parents=True)
    (extra / "sub" / "weights.csv").write_text("w\n1\n2\n")
    inference = tmp_path / "inference.R"
    inference.write_text(INFERENCE)
    sent = capture(sm, "CreateTrainingJob")
    job = api.train(TRAIN, name="parity", channels={"train": str(mtcars_csv), "extra": str(extra)},
                    hyperparameters={"formula": "mpg ~ wt + hp", "alpha": 0.25}, files=[str(inference)],
                    env={"PARITY": "1"})
    (request,) = sent
    described = job.describe()
    for key in ("HyperParameters", "InputDataConfig", "OutputDataConfig", "AlgorithmSpecification"):
        if key == "AlgorithmSpecification":  # moto adds its own MetricDefinitions
            assert described[key]["TrainingImage"] == request[key]["TrainingImage"]
        else:
            assert described[key] == request[key]
    assert request["Environment"] == {"PARITY": "1"}

    # /opt/ml as SageMaker lays it out: config files, then every channel downloaded from S3
    folder = jf.JobFolder(str(tmp_path / "job"))
    jf.write_training_config(folder, request)
    jf.stage_training_inputs(folder, request)
    assert os.path.isfile(os.path.join(folder.root, "input/data/train/mtcars.csv"))
    assert os.path.isfile(os.path.join(folder.root, "input/data/extra/sub/weights.csv"))
    submit_dir = json.loads(request["HyperParameters"]["sagemaker_submit_directory"])
    assert submit_dir.startswith("s3://")  # fetched by the container's R entrypoint through fetch.py

    logs = run_container(["/bin/sh", ENTRYPOINT, "train"], folder, request["Environment"],
                         {"TRAINING_JOB_NAME": request["TrainingJobName"]}, container_python)
    assert "alpha is 0.25" in logs
    model_dir = os.path.join(folder.root, "model")
    assert sorted(os.listdir(os.path.join(model_dir, "code"))) == ["inference.R", "train.R"]
    ours = [float(v) for v in open(os.path.join(model_dir, "coef.txt")).read().split()]
    assert ours == pytest.approx(r_numbers("cat(format(coef(lm(mpg ~ wt + hp, mtcars)), digits = 17))"), rel=1e-12)

    # SageMaker packs /opt/ml/model into the job's ModelArtifacts location
    jf.publish_training_outputs(folder, request)
    assert jf.model_artifact_path(request) == job.model_data
    bucket, key = aws.split_s3(job.model_data)
    assert moto_server.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 0

    # serving from the uploaded model.tar.gz, with the CreateModel request the backend sends
    if not os.path.exists(SERVE_R):
        pytest.skip("container/serve.R is not there yet: serving parity not checked")
    probe = subprocess.run(["Rscript", "-e", "cat(requireNamespace('jsonlite', quietly = TRUE))"],
                           capture_output=True, text=True)
    if probe.stdout.strip() != "TRUE":
        pytest.skip("the jsonlite R package is not installed (apt-get install r-cran-jsonlite): serving not checked")
    models = capture(sm, "CreateModel")
    name = spec.unique_name("parity")
    predictor = sm.deploy({
        "model": spec.model_request(model_name=name, image=IMAGE, role=ROLE, model_data=job.model_data),
        "endpoint_config": spec.endpoint_config_request(config_name=name, model_name=name),
        "endpoint": spec.endpoint_request(endpoint_name=name, config_name=name)})
    assert predictor.status == "InService"
    container = models[0]["PrimaryContainer"]
    answer = serve_and_predict(tmp_path / "serve", container, NEWDATA, container_python)
    expected = r_numbers("m <- lm(mpg ~ wt + hp, mtcars); "
                       "cat(format(predict(m, data.frame(wt = c(2.5, 3.1), hp = c(120, 200))), digits = 17))")
    assert [float(v) for v in answer.split()] == pytest.approx(expected, rel=1e-9)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_and_predict(path, container, body, python):
    """`entrypoint.sh serve` with the model container's settings; SageMaker's model download is the
    container's own (SM_R_MAGIC_MODEL_DATA = the s3:// ModelDataUrl, fetched from moto by fetch.py)."""
    folder = jf.JobFolder(str(path))
    os.makedirs(folder.root, exist_ok=True)
    port = free_port()
    env = dict(os.environ)
    env.update(container.get("Environment", {}))
    env.update(SM_R_MAGIC_ROOT=folder.root, SM_R_MAGIC_PYTHON=python,
               SM_R_MAGIC_MODEL_DATA=container["ModelDataUrl"], SAGEMAKER_BIND_TO_PORT=str(port),
               SM_R_MAGIC_BIND_HOST="127.0.0.1", SM_R_MAGIC_WORKERS="1")
    log = open(path / "serve.log", "w+")
    proc = subprocess.Popen(["/bin/sh", ENTRYPOINT, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, open(path / "serve.log").read()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, open(path / "serve.log").read()
            time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/invocations", body=body.encode(),
                     headers={"Content-Type": "text/csv", "Accept": "text/csv"})
        response = conn.getresponse()
        text = response.read().decode()
        assert response.status == 200, text + open(path / "serve.log").read()
        assert os.path.isfile(os.path.join(folder.root, "model", "model.rds"))  # extracted from model.tar.gz
        return text
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        log.close()


def test_processing_request_runs_in_the_container(sm, moto_server, mtcars_csv, tmp_path, container_python):
    sent = capture(sm, "CreateProcessingJob")
    job = api.processing(PROCESS, name="parity-prep", inputs={"raw": str(mtcars_csv)},
                         outputs={"heavy": None, "count": "s3://parity-out/count"})
    moto_server.client("s3").create_bucket(Bucket="parity-out")
    (request,) = sent
    assert job.outputs == {o["OutputName"]: o["S3Output"]["S3Uri"]
                           for o in request["ProcessingOutputConfig"]["Outputs"]}

    folder = jf.JobFolder(str(tmp_path / "job"))
    jf.write_processing_config(folder, request)
    jf.stage_processing_inputs(folder, request)  # the data and the code input, from S3
    code = os.path.join(folder.root, "processing/input/code", spec.SOURCEDIR_NAME)
    assert os.path.isfile(code)
    app = request["AppSpecification"]
    argv = [a.replace(spec.CONTAINER_DIR, CONTAINER_DIR) for a in app["ContainerEntrypoint"]]
    argv += app.get("ContainerArguments", [])
    run_container(["/bin/sh"] + argv, folder, request["Environment"],
                  {"PROCESSING_JOB_NAME": request["ProcessingJobName"]}, container_python)

    jf.publish_processing_outputs(folder, request)  # SageMaker uploads /opt/ml/processing/output/<name>
    s3 = moto_server.client("s3")
    bucket, key = aws.split_s3(job.outputs["heavy"])
    heavy = s3.get_object(Bucket=bucket, Key=key + "/heavy.csv")["Body"].read().decode()
    expected = int(r_numbers("cat(sum(mtcars$wt > 3))")[0])
    assert len(heavy.strip().splitlines()) == 1 + expected
    assert s3.get_object(Bucket="parity-out", Key="count/n.txt")["Body"].read().decode().strip() == str(expected)
    shutil.rmtree(folder.path)
