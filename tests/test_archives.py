"""Archives that would write or link outside their folder are refused, by Python before anything is created
and by the container's R (which extracts model.tar.gz and sourcedir.tar.gz) before anything is written.

Each crafted archive holds one kind of unsafe member; `outside` is a folder beside the extraction folder that
must stay untouched."""

import io
import json
import os
import subprocess
import tarfile

import pytest
from IPython.core.error import UsageError

from sm_r_magic.archives import UnsafeArchive, check_archive
from sm_r_magic.errors import JobFailed
from sm_r_magic.paths import ENTRYPOINT


# kind -> (members as (name, type, link or data), the member the refusal names)
UNSAFE = {
    "symlink-out": ([("evil", tarfile.SYMTYPE, "{outside}"), ("evil/file", tarfile.REGTYPE, b"pwned")], "evil"),
    "symlink-out-relative": ([("code", tarfile.DIRTYPE, ""), ("code/up", tarfile.SYMTYPE, "../../outside"),
                              ("code/up/file", tarfile.REGTYPE, b"pwned")], "code/up"),
    # each link alone stays inside by its text, but t resolves through d/s (the folder itself) to its parent
    "symlink-chain": ([("d", tarfile.DIRTYPE, ""), ("d/s", tarfile.SYMTYPE, ".."), ("t", tarfile.SYMTYPE, "d/s/.."),
                       ("t/outside/file", tarfile.REGTYPE, b"pwned")], "t"),
    "through-symlink": ([("sub", tarfile.DIRTYPE, ""), ("inner", tarfile.SYMTYPE, "sub"),
                         ("inner/file", tarfile.REGTYPE, b"x")], "inner/file"),
    "hardlink-out": ([("passwd", tarfile.LNKTYPE, "{outside}/secret.txt")], "passwd"),
    "hardlink-in": ([("a.txt", tarfile.REGTYPE, b"a"), ("b.txt", tarfile.LNKTYPE, "a.txt")], "b.txt"),
    "chardev": ([("null", tarfile.CHRTYPE, "")], "null"),
    "blockdev": ([("disk", tarfile.BLKTYPE, "")], "disk"),
    "fifo": ([("pipe", tarfile.FIFOTYPE, "")], "pipe"),
    "absolute": ([("{outside}/abs.txt", tarfile.REGTYPE, b"pwned")], "{outside}/abs.txt"),
    "dotdot": ([("../../outside/up.txt", tarfile.REGTYPE, b"pwned")], "../../outside/up.txt"),
}


def craft(path, members, outside, fmt=tarfile.GNU_FORMAT):
    with tarfile.open(path, "w:gz", format=fmt) as tar:
        for name, kind, content in members:
            info = tarfile.TarInfo(name.format(outside=outside))
            info.type = kind
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            if kind == tarfile.REGTYPE:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                info.linkname = content.format(outside=outside)
                tar.addfile(info)
    return path


@pytest.fixture
def outside(tmp_path):
    """A folder next to the extraction folders, with one file a hard link would expose."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("secret")
    return folder


def untouched(folder):
    return sorted(p.name for p in folder.rglob("*")) == ["secret.txt"]


def bad_archive(tmp_path, outside, kind, name="model.tar.gz"):
    members, _ = UNSAFE[kind]
    folder = tmp_path / kind
    folder.mkdir(exist_ok=True)
    return craft(str(folder / name), members, outside)


def refused_member(kind, outside):
    return UNSAFE[kind][1].format(outside=outside)


@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_python_check_names_the_unsafe_member(tmp_path, outside, kind):
    with pytest.raises(UnsafeArchive) as info:
        check_archive(bad_archive(tmp_path, outside, kind))
    assert f"has an unsafe member: '{refused_member(kind, outside)}'" in str(info.value)


def test_long_names_are_checked_in_gnu_and_pax_archives(tmp_path, outside):
    """Names over 100 characters travel in GNU long-name or pax records, which both checks read."""
    long_link = "l" * 120
    members = [("a/" * 60 + "x.txt", tarfile.REGTYPE, b"x"), (long_link, tarfile.SYMTYPE, "../" + "y" * 110)]
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        path = craft(str(tmp_path / f"long-{fmt}.tar.gz"), members, outside, fmt)
        with pytest.raises(UnsafeArchive, match=f"unsafe member: '{long_link}' is a symbolic link leading out"):
            check_archive(path)
        proc = run_train(tmp_path / f"job-{fmt}", path)
        assert proc.returncode == 2
        assert f"unsafe member: '{long_link}' is a symbolic link leading out" in proc.failure


def run_train(job, sourcedir_tarball, env=None):
    """The container's train mode with sagemaker_submit_directory naming the archive (real Rscript)."""
    root = job / "ml"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps({
        "sagemaker_program": '"train.R"', "sagemaker_submit_directory": json.dumps(str(sourcedir_tarball))}))
    proc = subprocess.run(["/bin/sh", ENTRYPOINT, "train"], env={**os.environ, "SM_R_MAGIC_ROOT": str(root), **(env or {})},
                          capture_output=True, text=True, timeout=120)
    failure = root / "output" / "failure"
    proc.failure = failure.read_text() if failure.exists() else ""
    proc.code_dir = root / "code"
    return proc


@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_train_refuses_an_unsafe_sourcedir_before_writing_anything(tmp_path, outside, kind, r_available):
    tarball = bad_archive(tmp_path, outside, kind, name="sourcedir.tar.gz")
    job = tmp_path / "job" / "deeper"  # `outside` is two levels above the code folder, as the crafted names expect
    job.mkdir(parents=True)
    proc = run_train(job, tarball)
    assert proc.returncode == 2, proc.stderr
    line = f"Error preparing the job: sourcedir.tar.gz has an unsafe member: '{refused_member(kind, outside)}'"
    assert proc.failure.startswith(line) and len(proc.failure.splitlines()) == 1
    assert line in proc.stderr
    assert untouched(outside)
    assert not os.path.exists(proc.code_dir) or not os.listdir(proc.code_dir)


def test_links_inside_the_archive_still_work(tmp_path, outside, r_available):
    """A sourcedir whose helper is a symbolic link to another file of it, read through a linked folder."""
    tarball = craft(str(tmp_path / "sourcedir.tar.gz"), [
        ("train.R", tarfile.REGTYPE,
         b'source("helpers.R")\nwriteLines(readLines("current/value.txt"), file.path(sm_model_dir(), "v.txt"))\n'
         b'cat("doubled", double_it(21), "\\n")\n'),
        ("R", tarfile.DIRTYPE, ""), ("R/utils.R", tarfile.REGTYPE, b"double_it <- function(x) 2 * x\n"),
        ("helpers.R", tarfile.SYMTYPE, "R/utils.R"),
        ("v1", tarfile.DIRTYPE, ""), ("v1/value.txt", tarfile.REGTYPE, b"one\n"), ("current", tarfile.SYMTYPE, "v1"),
    ], outside)
    assert check_archive(tarball)
    proc = run_train(tmp_path / "job", tarball)
    assert proc.returncode == 0, proc.stderr
    assert "doubled 42" in proc.stdout
    assert os.path.islink(proc.code_dir / "helpers.R")
    assert (tmp_path / "job" / "ml" / "model" / "v.txt").read_text() == "one\n"


@pytest.mark.parametrize("kind", ["symlink-out", "hardlink-out", "fifo", "not-gzip"])
def test_deploy_of_an_unsafe_local_model_is_one_line_and_creates_nothing(shell, local_root, tmp_path, outside, kind,
                                                                          capsys):
    if kind == "not-gzip":
        path = tmp_path / "model.tar.gz"
        path.write_text("model_fn <- function(d) 1\n")
        expected = "is not a readable gzip-compressed tar"
    else:
        path = bad_archive(tmp_path, outside, kind)
        expected = f"has an unsafe member: '{refused_member(kind, outside)}'"
    result = shell.run_cell(f"%%r_deploy --model {path} --as ep\nmodel_fn <- function(model_dir) 1\n")
    error = result.error_in_exec
    assert isinstance(error, UsageError), error
    assert str(error).startswith(f"--model {path} {expected}") and "\n" not in str(error)
    assert "Traceback" not in capsys.readouterr().out
    assert "ep" not in shell.user_ns
    assert not local_root.exists()
    assert untouched(outside)


SERVE = '''
model_fn <- function(model_dir) readRDS(file.path(model_dir, "latest.rds"))
predict_fn <- function(data, model) data$x * model
'''


def test_model_with_an_inside_symlink_deploys_and_serves(shell, tmp_path, outside, r_available):
    rds = tmp_path / "model.rds"
    subprocess.run([r_available, "-e", f'saveRDS(2.5, "{rds}")'], check=True)
    tarball = craft(str(tmp_path / "model.tar.gz"), [("model.rds", tarfile.REGTYPE, rds.read_bytes()),
                                                     ("latest.rds", tarfile.SYMTYPE, "model.rds")], outside)
    result = shell.run_cell(f"%%r_deploy --model {tarball} --as ep\n{SERVE}")
    assert result.error_in_exec is None, result.error_in_exec
    ep = shell.user_ns["ep"]
    try:
        assert ep.predict({"x": [1, 2]}, content_type="application/json") == [2.5, 5]
    finally:
        ep.delete()


@pytest.mark.parametrize("kind", ["symlink-out", "symlink-chain", "through-symlink", "hardlink-out"])
def test_unsafe_model_from_s3_is_refused_by_the_container(shell, moto_server, tmp_path, outside, kind, r_available):
    """Python cannot check an s3:// model before the endpoint exists: the container's R refuses it when it
    extracts it (here the local backend's server, which downloads it from moto like SageMaker would)."""
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="models")
    s3.upload_file(bad_archive(tmp_path, outside, kind), "models", f"{kind}/model.tar.gz")
    result = shell.run_cell(f"%%r_deploy --model s3://models/{kind}/model.tar.gz --as ep\n{SERVE}")
    assert isinstance(result.error_in_exec, JobFailed)
    ep = shell.user_ns["ep"]
    assert ep.status == "Failed"
    assert f"model.tar.gz has an unsafe member: '{refused_member(kind, outside)}'" in ep.failure_reason
    assert untouched(outside)
    model_dir = os.path.join(ep.local_folder, "opt", "ml", "model")
    assert not os.path.exists(model_dir) or not os.listdir(model_dir)


def test_trained_model_with_hard_linked_files_is_packed_as_plain_files(shell, local_root):
    """tarfile would pack a second name of a file as a hard link, which deploy then refuses: each name is stored
    as a plain file."""
    code = ('saveRDS(1, file.path(sm_model_dir(), "model.rds"))\n'
            'stopifnot(file.link(file.path(sm_model_dir(), "model.rds"), file.path(sm_model_dir(), "copy.rds")))\n')
    result = shell.run_cell(f"%%r_train --as job\n{code}")
    assert result.error_in_exec is None, result.error_in_exec
    model = shell.user_ns["job"].model_data
    assert {"model.rds", "copy.rds"} <= set(check_archive(model))
    with tarfile.open(model) as tar:
        assert tar.getmember("copy.rds").isreg() and tar.extractfile("copy.rds").read()


def test_sagemaker_deploy_of_an_unsafe_local_model_uploads_nothing(moto_server, settings, tmp_path, outside):
    """On the sagemaker backend a local --model is uploaded to S3 for CreateModel: the check comes first."""
    from sm_r_magic import api
    from sm_r_magic.errors import SmRMagicError

    settings.image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-r-magic:0.1.0"
    settings.role = "arn:aws:iam::123456789012:role/SageMakerRole"
    path = bad_archive(tmp_path, outside, "symlink-chain")
    with pytest.raises(SmRMagicError, match="has an unsafe member: 't' is a symbolic link whose target 'd/s/..'"):
        api.deploy(model=path, backend="sagemaker", progress="none")
    assert moto_server.client("s3").list_buckets()["Buckets"] == []
    assert moto_server.client("sagemaker").list_models()["Models"] == []
