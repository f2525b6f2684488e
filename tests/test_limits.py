"""SageMaker's limits from botocore's service model, checked before anything is built into a job: the same
request fails on every backend (local runs what SageMaker would be sent), with one line naming the option."""

import json
import subprocess
import sys

import pytest
from IPython.core.error import UsageError

from sm_r_magic import limits, spec
from sm_r_magic.errors import SmRMagicError

from .conftest import run_cell

DAY = 24 * 3600


def one_line(shell, magic, line, cell="x <- 1\n"):
    _, error = run_cell(shell, magic, line, cell)
    assert isinstance(error, UsageError), error
    assert "\n" not in str(error)
    return str(error)


@pytest.mark.parametrize("magic, line, expected", [
    ("r_train", "--instance-type ml.m5.hugex",
     "--instance-type ml.m5.hugex is not a SageMaker training instance type (did you mean ml.m5.large"),
    # each job kind has its own enum: ml.p4d.24xlarge trains, but runs no processing jobs
    ("r_train", "--instance-type ml.p4d.24xlarge --dry-run", None),
    ("r_processing", "--instance-type ml.p4d.24xlarge",
     "--instance-type ml.p4d.24xlarge is not a SageMaker processing instance type"),
    ("r_train", "--hp formula=" + "y" * 2499, "--hp formula: the JSON-encoded value is 2,501 characters long; "
                                               "SageMaker takes at most 2,500"),
    ("r_train", "--hyperparameters '{\"long\": 1" + "0" * 2500 + "}'", "--hp long: the JSON-encoded value is 2,501 "),
    ("r_train", f"--max-run {28 * DAY + 1}", f"--max-run {28 * DAY + 1} is above SageMaker's maximum of 2,419,200"),
    ("r_processing", f"--max-run {10 * DAY}", f"--max-run {10 * DAY} is above SageMaker's maximum of 777,600"),
    ("r_processing", "--instance-count 101", "--instance-count 101 is above SageMaker's maximum of 100"),
    ("r_processing", "--env TOKEN=" + "t" * 257, "--env TOKEN: the value is 257 characters long; SageMaker takes at "
                                                 "most 256"),
    ("r_train", "--metric rmse='rmse: ([0-9.]+)" + " " * 500 + "'", "--metric rmse: the value is 515 characters"),
    ("r_processing", "--packages " + ",".join(f"pkg{i}" for i in range(60)), "--packages: the value is"),
])
def test_a_request_sagemaker_would_refuse_fails_locally_in_one_line(shell, local_root, magic, line, expected):
    if expected is None:
        _, error = run_cell(shell, magic, line, "x <- 1\n")
        assert error is None, error
    else:
        message = one_line(shell, magic, line)
        assert expected in message, message
    assert not local_root.exists()  # nothing stored, no job folder


def test_endpoint_instance_types_are_their_own_list(shell, local_root, tmp_path, capsys):
    model, contents = tmp_path / "model.tar.gz", tmp_path / "model"
    contents.mkdir()
    (contents / "model.rds").write_bytes(b"x")
    subprocess.run(["tar", "-czf", str(model), "-C", str(contents), "."], check=True)  # not into what it packs
    cell = "model_fn <- function(model_dir) 1\n"
    message = one_line(shell, "r_deploy", f"--model {model} --instance-type ml.m5.hugex --dry-run", cell)
    assert message.startswith("--instance-type ml.m5.hugex is not a SageMaker endpoint instance type")
    # an endpoint type that is no training type: valid for endpoints
    _, error = run_cell(shell, "r_deploy", f"--model {model} --instance-type ml.inf1.xlarge --dry-run", cell)
    assert error is None, error
    printed = json.loads(capsys.readouterr().out)
    assert printed["CreateEndpointConfig"]["ProductionVariants"][0]["InstanceType"] == "ml.inf1.xlarge"
    assert not local_root.exists()


def test_local_paths_and_a_local_image_tag_are_fine_locally(shell, local_root, mtcars_csv, capsys):
    """Locally the request names this machine's paths and image tag where SageMaker wants s3:// and ECR."""
    _, error = run_cell(shell, "r_train", f"--channel train={mtcars_csv} --dry-run --max-run {28 * DAY}", "x <- 1\n")
    assert error is None, error
    printed = json.loads(capsys.readouterr().out)
    assert printed["AlgorithmSpecification"]["TrainingImage"] == "sm-r-magic:latest"
    assert printed["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == str(mtcars_csv)
    assert "RoleArn" not in printed


def test_the_walk_names_the_option_not_the_json_path():
    request = spec.training_request(job_name="ok-1", image="123456789012.dkr.ecr.us-east-1.amazonaws.com/r:1",
                                    role="arn:aws:iam::123456789012:role/R", code_uri="s3://b/c/sourcedir.tar.gz",
                                    channels={"train": "s3://b/train/", "test": "gs://b/test/"}, hyperparameters={},
                                    output_path="s3://b/out")
    with pytest.raises(SmRMagicError, match=r"^--channel test: value 'gs://b/test/' does not match SageMaker's "):
        limits.check("CreateTrainingJob", request)
    limits.check("CreateTrainingJob", request, on_sagemaker=False)  # locally URIs are this machine's business
    request["InputDataConfig"].pop()
    request["RoleArn"] = "role/R"
    with pytest.raises(SmRMagicError, match=r"^RMagic.role: the value is 6 characters long; SageMaker needs at least"):
        limits.check("CreateTrainingJob", request)
    request["RoleArn"] = "arn:aws:iam::123456789012:role/R"
    request["HyperParameters"].update({f"h{i}": "1" for i in range(99)})
    with pytest.raises(SmRMagicError, match=r"^--hp/--hyperparameters: 101 entries: SageMaker takes at most 100"):
        limits.check("CreateTrainingJob", request)


def test_without_botocore_nothing_is_checked_and_nothing_breaks(tmp_path):
    """pip install sm-r-magic without [aws]: the local backend runs; no limits to check against."""
    code = f"""
import sys
sys.modules["botocore"] = None  # import botocore fails, as when it is not installed
import sm_r_magic
sm_r_magic.settings().local_root = {str(tmp_path / 'root')!r}
request = sm_r_magic.train("x <- 1", instance_type="ml.m5.hugex", dry_run=True)
print(request["ResourceConfig"]["InstanceType"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ml.m5.hugex"


CACHE_PROBE = """
import json, sys
from sm_r_magic import limits, spec
request = spec.training_request(job_name="ok-1", image="123456789012.dkr.ecr.us-east-1.amazonaws.com/r:1",
                                role="arn:aws:iam::123456789012:role/R", code_uri="s3://b/c/sourcedir.tar.gz",
                                channels={"train": "s3://b/train/"}, hyperparameters={}, output_path="s3://b/out")
request["ResourceConfig"]["InstanceType"] = "ml.m5.hugex"
try:
    limits.check("CreateTrainingJob", request)
    message = None
except Exception as exc:
    message = str(exc)
print(json.dumps({"message": message, "botocore_imported": "botocore" in sys.modules}))
"""


def probe_limits(env):
    out = subprocess.run([sys.executable, "-c", CACHE_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_checked_shapes_are_cached_and_botocore_is_then_not_even_imported(tmp_path):
    """The first process reads botocore's whole model and keeps the checked operations' shapes in a cache file;
    the next ones read that file (botocore is not imported) and refuse the same request with the same line."""
    import os

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = probe_limits(env)
    assert first["botocore_imported"]
    assert first["message"].startswith("--instance-type ml.m5.hugex is not a SageMaker training instance type")
    (cached,) = (tmp_path / "cache" / "sm-r-magic").iterdir()
    assert cached.stat().st_size < 1_000_000
    assert set(json.loads(cached.read_text())["operations"]) == set(limits.CHECKED_OPERATIONS)
    second = probe_limits(env)
    assert second == {"message": first["message"], "botocore_imported": False}

    # a broken cache file is read the slow way again (and rewritten), and a cache folder that cannot be made
    # only costs the slow read
    cached.write_text("{not json")
    assert probe_limits(env) == first
    assert json.loads(cached.read_text())["operations"]
    not_a_folder = tmp_path / "a-file"  # (unwritable even for root)
    not_a_folder.write_text("")
    assert probe_limits({**os.environ, "XDG_CACHE_HOME": str(not_a_folder)}) == first


def test_an_operation_outside_the_cached_ones_is_checked_against_the_whole_model():
    assert "CreateCompilationJob" not in limits.CHECKED_OPERATIONS
    with pytest.raises(SmRMagicError, match=r"RoleArn is missing"):
        limits.check("CreateCompilationJob", {"CompilationJobName": "a"})
