"""Pure pieces: the deterministic sourcedir, request builders, option parsing."""

import hashlib
import io
import json
import os
import tarfile

import pytest

from sm_r_magic import parsing, sourcedir, spec
from sm_r_magic.errors import SmRMagicError


def test_sourcedir_is_deterministic(tmp_path):
    src = tmp_path / "src"
    (src / "R").mkdir(parents=True)
    (src / "R" / "b.R").write_text("b <- 2\n")
    (src / "a.R").write_text("a <- 1\n")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "junk.pyc").write_bytes(b"junk")
    with sourcedir.build("train.R", "x <- 1\n", source_dir=str(src)) as first:
        os.utime(src / "a.R", (1, 1))  # a new mtime must not change the bytes
        with sourcedir.build("train.R", "x <- 1\n", source_dir=str(src)) as second:
            assert first.read_bytes() == second.read_bytes() and first.sha256 == second.sha256
        with sourcedir.build("train.R", "x <- 2\n", source_dir=str(src)) as third:
            assert third.sha256 != first.sha256
        assert hashlib.sha256(first.read_bytes()).hexdigest() == first.sha256
        with tarfile.open(fileobj=io.BytesIO(first.read_bytes())) as tar:
            members = tar.getmembers()
    assert [m.name for m in members] == ["R/b.R", "a.R", "train.R"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)


def test_sourcedir_files_order_does_not_matter(tmp_path):
    a, b = tmp_path / "a.R", tmp_path / "b.R"
    a.write_text("1")
    b.write_text("2")
    with sourcedir.build("p.R", "x", files=[str(a), str(b)]) as ab, \
            sourcedir.build("p.R", "x", files=[str(b), str(a)]) as ba:
        assert ab.sha256 == ba.sha256


def test_sourcedir_rejects_program_clash(tmp_path):
    (tmp_path / "train.R").write_text("x")
    with pytest.raises(SmRMagicError, match="both the cell and a file"):
        sourcedir.build("train.R", "y", source_dir=str(tmp_path))


def test_hp_values_are_json_when_they_parse():
    hps = parsing.parse_hyperparameters(["a=0.5", "b=true", "c=mpg ~ wt", 'd="0.5"', "e=[1,2]", "f=null"])
    assert hps == {"a": 0.5, "b": True, "c": "mpg ~ wt", "d": "0.5", "e": [1, 2], "f": None}
    # not JSON numbers: kept as text, so the request stays valid JSON
    assert parsing.parse_hyperparameters(["tol=NaN", "max=Infinity"]) == {"tol": "NaN", "max": "Infinity"}


def test_hyperparameters_are_encoded_like_the_sdk():
    request = spec.training_request(job_name="j", image="i", code_uri="s3://b/c.tar.gz", channels={},
                                    hyperparameters={"alpha": 0.5, "formula": "mpg ~ wt"}, output_path="s3://b/o")
    hps = request["HyperParameters"]
    assert hps == {"alpha": "0.5", "formula": '"mpg ~ wt"', "sagemaker_program": '"train.R"',
                   "sagemaker_submit_directory": '"s3://b/c.tar.gz"'}
    assert "InputDataConfig" not in request and "RoleArn" not in request


def test_unique_names_are_valid_and_distinct():
    now = 1_700_000_000.0  # one second: names must still be distinct
    names = {spec.unique_name("a" * parsing.MAX_BASE_NAME, "x", now=now) for _ in range(2000)}
    assert len(names) == 2000
    for name in names:
        assert len(name) <= 63
        parsing.validate_base_name(name[:parsing.MAX_BASE_NAME])


def test_processing_request_runs_the_container_entrypoint():
    request = spec.processing_request(job_name="p", image="i", code_uri="s3://b/sourcedir.tar.gz",
                                      inputs={"raw": "s3://b/raw"}, outputs={"train": "s3://b/out/train"})
    assert request["AppSpecification"]["ContainerEntrypoint"] == ["/opt/sm_r_magic/entrypoint.sh", "process"]
    code = [i for i in request["ProcessingInputs"] if i["InputName"] == "code"][0]
    assert code["S3Input"]["LocalPath"] == "/opt/ml/processing/input/code"
    assert request["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/processing/input/code/sourcedir.tar.gz"
    assert json.dumps(request)  # serialisable as sent


def test_whether_the_code_saved_with_a_model_can_serve(tmp_path):
    """One answer for deploying a trained model (--model) and registering one (--register): the training code,
    or the code/ folder its model.tar.gz holds, must have a program to serve; what cannot be read counts as yes."""
    def model_tar(*names):
        path = tmp_path / f"model-{len(names)}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name in names:
                info = tarfile.TarInfo(name)
                info.size = 1
                tar.addfile(info, io.BytesIO(b"x"))
        return str(path)

    programs = ("deploy.R", "inference.R")
    serves = sourcedir.saved_code_serves
    assert serves(["train.R", "deploy.R"], None, programs)
    assert serves(None, None, programs)  # the training code could not be read
    assert not serves(["train.R"], None, programs)  # a model in S3: only the code tells
    assert serves(["train.R"], model_tar("model.rds", "code/inference.R"), programs)  # written by the training code
    assert not serves(["train.R"], model_tar("model.rds"), programs)
    assert serves(["train.R"], str(tmp_path / "gone.tar.gz"), programs)  # the server will say what it lacks
    (tmp_path / "not-a-tar.gz").write_text("x")
    assert serves(["train.R"], str(tmp_path / "not-a-tar.gz"), programs)
