"""Deterministic sourcedir.tar.gz: sorted entries, fixed mtimes, owners and modes, gzip without a
timestamp. The same cell and files give the same bytes, and their sha256 names the artifact.

The archive is streamed to a private (0600) temporary file while it is hashed, so a large --source-dir
never sits in memory. What a folder contributes is filtered like a git checkout: version-control and
editor clutter and credential/environment files are left out by default, `.smignore` in the folder adds
patterns (gitignore syntax; `!pattern` brings a default-excluded file back), and a symlink that leaves the
folder is refused rather than packing whatever it points at.
"""

import gzip
import hashlib
import io
import os
import re
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field

from .errors import SmRMagicError

IGNORE_FILE = ".smignore"

# Never useful inside a job: left out silently.
CLUTTER_PATTERNS = (
    ".git/", ".hg/", ".svn/", "__pycache__/", ".Rproj.user/", ".ipynb_checkpoints/", ".DS_Store",
    ".Rhistory", ".RData", IGNORE_FILE,
)

# Credentials and environment files: left out, and the user is told which (a job must not carry them to a
# world-readable archive or to S3). .Rprofile is code, but it is left out too: the container starts R with
# --no-init-file, so it never runs in a job, and it is where people put Sys.setenv(GITHUB_PAT = ...).
SECRET_PATTERNS = (
    ".Renviron*", ".Rprofile", ".env*", ".httr-oauth", ".netrc", "_netrc", ".git-credentials", ".pgpass",
    ".my.cnf", ".npmrc", ".pypirc", ".aws/", ".ssh/", ".gnupg/", ".kube/", ".docker/", ".azure/",
    ".config/gcloud/", "*.pem", "*.key", "*.p12", "*.pfx", "*.keystore", "*.jks", "id_rsa*", "id_dsa*",
    "id_ecdsa*", "id_ed25519*", "credentials.json", "client_secret*.json",
)

LARGE_BYTES = 50 * 1024 * 1024  # warn above this much input: it is read, compressed and hashed on every run
# The archive is rebuilt on every run: on 196 MB of CSV, level 1 took 3.8 s (82.5 MB), level 6 17 s (72.5 MB)
# and level 9 45 s (71.9 MB). A 14% larger archive, stored and uploaded only when it changes, costs less.
COMPRESSLEVEL = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SourceDir:
    """A built sourcedir.tar.gz: a private temporary file until discard() (or the end of a `with`)."""
    path: str
    sha256: str
    program: str
    files: tuple = field(default_factory=tuple)
    size: int = 0

    @property
    def short(self):
        return self.sha256[:12]

    def read_bytes(self):
        with open(self.path, "rb") as fh:
            return fh.read()

    def discard(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.discard()


def _spec(lines):
    from pathspec import GitIgnoreSpec

    return GitIgnoreSpec.from_lines(lines)


def _read_ignore_file(root):
    path = os.path.join(root, IGNORE_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise SmRMagicError(f"cannot read {path} ({exc}): save it as UTF-8 text, one pattern per line") from None


class _Filter:
    """Which paths of a source folder are packed: defaults, then .smignore (last matching pattern wins)."""

    def __init__(self, root):
        user_lines = _read_ignore_file(root)
        try:
            self.user = _spec(user_lines)
        except (ValueError, re.error) as exc:
            raise SmRMagicError(f"{os.path.join(root, IGNORE_FILE)} has a pattern that is not valid gitignore "
                                f"syntax ({exc}): fix or remove it") from None
        self.spec = _spec(list(CLUTTER_PATTERNS) + list(SECRET_PATTERNS) + user_lines)
        self.secrets = _spec(SECRET_PATTERNS)

    def excluded(self, rel):
        return self.spec.match_file(rel)

    def is_default_secret(self, rel):
        """Left out because it looks like a credential, not because the user listed it."""
        return self.secrets.match_file(rel) and not self.user.match_file(rel)


def _inside(path, root_real):
    return path == root_real or path.startswith(root_real.rstrip(os.sep) + os.sep)


def _collect_dir(source_dir):
    """Archive name -> absolute path of every file to pack, plus the names left out as credentials.

    A symlink is packed as what it points at when that is inside the folder and not itself left out; one
    that leaves the folder is refused; a folder link back to an ancestor is not followed (a loop)."""
    root_real = os.path.realpath(source_dir)
    rules = _Filter(root_real)
    files, secrets = {}, []

    def left_out(probe, shown):
        if not rules.excluded(probe):
            return False
        if rules.is_default_secret(probe):
            secrets.append(shown)
        return True

    def keep(rel, path, is_dir):
        probe = rel + "/" if is_dir else rel
        if left_out(probe, probe):
            return False
        if os.path.islink(path):
            real = os.path.realpath(path)
            if not _inside(real, root_real):
                raise SmRMagicError(f"--source-dir {source_dir}: {rel} is a symlink to {real}, outside the folder: "
                                    f"copy what you need into the folder, or list {rel} in {IGNORE_FILE}")
            target = os.path.relpath(real, root_real).replace(os.sep, "/")
            if target != "." and left_out(target + "/" if is_dir else target, probe):
                return False
        return True

    for dirpath, dirnames, filenames in os.walk(root_real, followlinks=True):
        rel_dir = os.path.relpath(dirpath, root_real).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        here = os.path.realpath(dirpath)
        dirnames[:] = [name for name in sorted(dirnames)
                       if keep(prefix + name, os.path.join(dirpath, name), True)
                       and not _inside(here, os.path.realpath(os.path.join(dirpath, name)))]
        for name in filenames:
            rel, path = prefix + name, os.path.join(dirpath, name)
            if keep(rel, path, False) and os.path.isfile(path):  # not sockets, FIFOs or broken links
                files[rel] = path
    return files, sorted(secrets)


def _check_r_file_is_utf8(path):
    """R in the container reads code as UTF-8: a Latin-1 helpers.R would fail only when the job sources it."""
    if not path.lower().endswith(".r"):
        return
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SmRMagicError(f"--file {path!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): "
                            "save it as UTF-8 (R in the job reads code as UTF-8)") from None


def _add_file(entries, path):
    if os.path.isdir(path):
        raise SmRMagicError(f"--file {path!r} is a folder: give a file (or package a folder with --source-dir)")
    if not os.path.isfile(path):
        raise SmRMagicError(f"--file {path!r} does not exist: give a path to an existing file")
    _check_r_file_is_utf8(path)
    name = os.path.basename(path)
    if name in entries:
        raise SmRMagicError(f"--file {path!r}: {name} is already in the source folder or given twice")
    entries[name] = path


def collect(program, code, files=(), source_dir=None):
    """Map archive names to a path or bytes: the cell as `program`, --source-dir contents, --file files."""
    entries = {}
    if source_dir:
        if not os.path.isdir(source_dir):
            raise SmRMagicError(f"--source-dir {source_dir!r} is not a folder: give an existing folder")
        found, secrets = _collect_dir(source_dir)
        entries.update(found)
        if secrets:
            shown = ", ".join(secrets[:6]) + (f" and {len(secrets) - 6} more" if len(secrets) > 6 else "")
            _note(f"left out of --source-dir {source_dir} as credentials or environment files: {shown} "
                  f"(to ship one anyway, add !NAME to {IGNORE_FILE})")
    for path in files or ():
        _add_file(entries, path)
    if code is not None:
        if program in entries:
            raise SmRMagicError(f"{program} is both the cell and a file in --source-dir/--file: rename the file")
        entries[program] = code.encode("utf-8")
    return entries


def _note(text):
    print(f"sm-r-magic: {text}", file=sys.stderr)


def _megabytes(size):
    return f"{size / (1024 * 1024):.1f} MB"


def _warn_if_large(entries):
    sizes = {name: (len(v) if isinstance(v, bytes) else os.path.getsize(v)) for name, v in entries.items()}
    total = sum(sizes.values())
    if total > LARGE_BYTES:
        largest = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:3]
        _note(f"warning: the job's code is {_megabytes(total)} (largest: "
              + ", ".join(f"{name} {_megabytes(size)}" for name, size in largest)
              + "); it is read, compressed and hashed on every run: pass data with --input/--channel, "
              f"or leave it out with {IGNORE_FILE}")
    return total


class _HashingWriter:
    """A write-only file that hashes what passes through it."""

    def __init__(self, fh):
        self.fh = fh
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.digest.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def flush(self):
        self.fh.flush()


def _member(name, size, executable=False):
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o755 if executable else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(out, entries):
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="", compresslevel=COMPRESSLEVEL) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT, bufsize=_CHUNK) as tar:
            for name in sorted(entries):
                value = entries[name]
                if isinstance(value, bytes):
                    tar.addfile(_member(name, len(value)), io.BytesIO(value))
                    continue
                with open(value, "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    tar.addfile(_member(name, size, executable=os.access(value, os.X_OK)), fh)


def build(program, code, files=(), source_dir=None, directory=None):
    """Pack and hash into a private temporary file (in `directory`, default the system's): a SourceDir to
    discard() once stored or uploaded."""
    entries = collect(program, code, files, source_dir)
    _warn_if_large(entries)
    fd, path = tempfile.mkstemp(prefix="sourcedir-", suffix=".tar.gz", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            out = _HashingWriter(fh)
            _write_tar(out, entries)
    except BaseException:
        os.unlink(path)
        raise
    return SourceDir(path=path, sha256=out.digest.hexdigest(), program=program, files=tuple(sorted(entries)),
                     size=out.size)


def member_names(source):
    """The file names inside a sourcedir.tar.gz or model.tar.gz: a path or a binary file object."""
    opened = tarfile.open(source, "r:gz") if isinstance(source, str) else tarfile.open(fileobj=source, mode="r:gz")
    with opened as tar:
        return [m.name for m in tar.getmembers() if m.isfile()]


def saved_code_serves(code_names, model_path, programs):
    """Whether the code saved with a model can be served: the training code's file names (`code_names`, None
    when they cannot be read) or, for a model.tar.gz on this machine (`model_path`, else None), its code/
    folder, which the training code may have written itself, hold one of `programs`. What cannot be read
    counts as yes: the server reports what it lacks."""
    if code_names is None or any(p in code_names for p in programs):
        return True
    if model_path is None:
        return False
    try:
        members = member_names(model_path)
    except (OSError, tarfile.TarError):  # missing or not a readable archive
        return True
    return any(f"code/{p}" in members for p in programs)


def file_sha256(path, chunk=_CHUNK):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
