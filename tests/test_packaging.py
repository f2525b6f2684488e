"""What --source-dir and --file put in sourcedir.tar.gz: no credentials, no files from outside the folder
through links, a private archive, streamed rather than held in memory, and a word when it is large."""

import io
import os
import stat
import tarfile
import tracemalloc

import pytest
from IPython.core.error import UsageError

from sm_r_magic import sourcedir
from sm_r_magic.errors import SmRMagicError

from .conftest import run_cell

SECRETS = [".Renviron", ".Rprofile", ".env", ".env.local", ".envrc", ".aws/credentials", ".aws/config",
           ".ssh/id_rsa", ".netrc", ".git-credentials", ".httr-oauth", "deploy-key.pem", "id_ed25519",
           "R/.Renviron", ".kube/config", ".gnupg/secring.gpg", ".docker/config.json"]
CODE = ["R/helpers.R", "data/lookup.csv", "renv.lock", "README.md"]


def make_folder(root, names, text="x"):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{text} {name}\n")
    return root


def names_in(src):
    with tarfile.open(src.path) as tar:
        return sorted(tar.getnames())


def test_credentials_and_environment_files_are_left_out_and_named(tmp_path, capsys):
    folder = make_folder(tmp_path / "project", SECRETS + CODE + [".git/config", ".Rhistory"])
    with sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder)) as src:
        assert names_in(src) == sorted(CODE + ["train.R"])
        with tarfile.open(src.path) as tar:
            everything = b"".join(tar.extractfile(m).read() for m in tar.getmembers())
    assert b".aws/credentials" not in everything and b".Renviron" not in everything
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and "left out of --source-dir" in note and ".smignore" in note
    for shown in (".Renviron", ".Rprofile", ".aws/", ".env"):
        assert shown in note
    assert "and 10 more" in note  # 16 left out (a folder counts once), the first 6 named


def test_smignore_leaves_out_more_and_brings_a_default_back(tmp_path, capsys):
    folder = make_folder(tmp_path / "project", CODE + [".env.example", ".env", "data/big.csv", "notes/todo.txt",
                                                     "out/model.rds"])
    (folder / ".smignore").write_text("# gitignore syntax\ndata/*\n!data/lookup.csv\nnotes/\n*.rds\n!.env.example\n")
    with sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder)) as src:
        assert names_in(src) == sorted(CODE + [".env.example", "train.R"])  # .smignore itself is not shipped
    assert ".env" in capsys.readouterr().err  # .env stays out (a default) and is named
    (folder / ".smignore").write_text("[z-a]\n")
    with pytest.raises(SmRMagicError, match=r"\.smignore has a pattern that is not valid gitignore syntax"):
        sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder))


def test_a_symlink_leaving_the_folder_is_refused_in_one_line(tmp_path):
    outside = make_folder(tmp_path / "home", ["secret.txt", "keys/k.txt"])
    folder = make_folder(tmp_path / "project", CODE)
    (folder / "innocent.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(SmRMagicError) as info:
        sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder))
    message = str(info.value)
    assert "\n" not in message and "innocent.txt is a symlink to" in message and "outside the folder" in message
    (folder / "innocent.txt").unlink()
    (folder / "keys").symlink_to(outside / "keys", target_is_directory=True)
    with pytest.raises(SmRMagicError, match="keys is a symlink to .*outside the folder"):
        sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder))
    (folder / ".smignore").write_text("keys\n")  # an ignored link is not followed, so not refused
    with sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder)) as src:
        assert names_in(src) == sorted(CODE + ["train.R"])


def test_links_inside_the_folder_pack_their_target_but_never_a_left_out_file(tmp_path):
    folder = make_folder(tmp_path / "project", CODE + [".aws/credentials"])
    (folder / "helpers.R").symlink_to(folder / "R" / "helpers.R")
    (folder / "creds").symlink_to(folder / ".aws" / "credentials")  # a secret under another name
    (folder / "R" / "loop").symlink_to(folder, target_is_directory=True)  # must not recurse forever
    with sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder)) as src:
        assert names_in(src) == sorted(CODE + ["helpers.R", "train.R"])
        with tarfile.open(src.path) as tar:
            assert tar.extractfile("helpers.R").read() == b"x R/helpers.R\n"
            assert all(m.isfile() for m in tar.getmembers())


def test_archive_is_private_and_the_same_inputs_give_the_same_bytes(tmp_path):
    folder = make_folder(tmp_path / "project", CODE)
    with sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder)) as first:
        assert stat.S_IMODE(os.stat(first.path).st_mode) == 0o600
        with sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder)) as second:
            assert first.read_bytes() == second.read_bytes() and first.sha256 == second.sha256
            assert first.path != second.path
        kept = first.path
    assert not os.path.exists(kept)  # a built archive is removed once used


def test_packaging_streams_instead_of_holding_the_folder_in_memory(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    with open(folder / "big.bin", "wb") as fh:
        fh.write(os.urandom(24 << 20))  # incompressible: the archive is as large as the folder
    tracemalloc.start()
    try:
        with sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder)) as src:
            peak = tracemalloc.get_traced_memory()[1]
            size = os.path.getsize(src.path)
    finally:
        tracemalloc.stop()
    assert size > 24 << 20
    assert peak < 6 << 20, f"{peak / 2**20:.1f} MB held while packing a 24 MB folder"


def test_a_large_folder_is_reported_with_its_largest_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sourcedir, "LARGE_BYTES", 2 << 20)
    folder = make_folder(tmp_path / "project", CODE)
    (folder / "data" / "huge.csv").write_bytes(b"1,2,3\n" * (600 << 10))  # 3.5 MB
    (folder / "model.rds").write_bytes(b"\0" * (1 << 20))
    with sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder)):
        pass
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and "warning: the job's code is 4.5 MB" in warning
    assert warning.index("data/huge.csv 3.5 MB") < warning.index("model.rds 1.0 MB")
    assert "--input/--channel" in warning and ".smignore" in warning
    monkeypatch.setattr(sourcedir, "LARGE_BYTES", 50 << 20)
    with sourcedir.build("train.R", "x <- 1\n", source_dir=str(folder)):
        pass
    assert capsys.readouterr().err == ""  # under the threshold: no word


def test_the_local_backend_stores_a_private_archive_without_the_secrets(shell, local_root, tmp_path, capsys,
                                                                         r_available):
    folder = make_folder(tmp_path / "project", [".Renviron", ".aws/credentials"])
    (folder / "helpers.R").write_text("helper <- function() 42\n")
    _, error = run_cell(shell, "r_train", f"--source-dir {folder} --as job",
                        'source("helpers.R")\nstopifnot(helper() == 42)\n'
                        'stopifnot(!file.exists(".Renviron"), !dir.exists(".aws"))\n')
    assert error is None, error
    job = shell.user_ns["job"]
    assert job.status == "Completed"
    (stored,) = (local_root / "sourcedir").glob("*/sourcedir.tar.gz")
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    with tarfile.open(stored) as tar:
        assert sorted(tar.getnames()) == ["helpers.R", "train.R"]
    assert ".Renviron" in capsys.readouterr().err


def test_a_link_out_of_the_source_dir_stops_the_cell_and_creates_nothing(shell, local_root, tmp_path, capsys):
    folder = make_folder(tmp_path / "project", CODE)
    (folder / "config.R").symlink_to(os.path.expanduser("~/.bashrc") if os.path.exists(
        os.path.expanduser("~/.bashrc")) else "/etc/hostname")
    _, error = run_cell(shell, "r_train", f"--source-dir {folder}", "x <- 1\n")
    assert isinstance(error, UsageError) and "config.R is a symlink to" in str(error)
    assert not local_root.exists()
