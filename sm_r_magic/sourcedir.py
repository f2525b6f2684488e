"""Deterministic sourcedir.tar.gz: sorted entries, fixed mtimes, owners and modes, gzip without a
timestamp. The same cell and files give the same bytes, and their sha256 names the artifact."""

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass, field

from .errors import SmRMagicError

IGNORED = {".git", ".hg", ".svn", "__pycache__", ".Rproj.user", ".ipynb_checkpoints", ".Rhistory", ".RData",
           ".DS_Store"}


@dataclass(frozen=True)
class SourceDir:
    data: bytes
    sha256: str
    program: str
    files: tuple = field(default_factory=tuple)

    @property
    def short(self):
        return self.sha256[:12]


def _add(tar, name, data, executable=False):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o755 if executable else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _collect_dir(root):
    files = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED)
        for name in filenames:
            if name in IGNORED:
                continue
            path = os.path.join(dirpath, name)
            if not os.path.isfile(path):
                continue  # sockets, broken links
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            files[rel] = path
    return files


def collect(program, code, files=(), source_dir=None):
    """Map archive names to bytes: the cell as `program`, --source-dir contents, --file files."""
    entries = {}
    if source_dir:
        if not os.path.isdir(source_dir):
            raise SmRMagicError(f"--source-dir {source_dir!r} is not a folder: give an existing folder")
        for rel, path in _collect_dir(source_dir).items():
            entries[rel] = path
    for path in files or ():
        if not os.path.isfile(path):
            raise SmRMagicError(f"--file {path!r} does not exist: give a path to an existing file")
        name = os.path.basename(path)
        if name in entries:
            raise SmRMagicError(f"--file {path!r}: {name} is already in the source folder or given twice")
        entries[name] = path
    if code is not None:
        if program in entries:
            raise SmRMagicError(f"{program} is both the cell and a file in --source-dir/--file: rename the file")
        entries[program] = code.encode("utf-8")
    return entries


def build(program, code, files=(), source_dir=None):
    entries = collect(program, code, files, source_dir)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(entries):
            value = entries[name]
            if isinstance(value, bytes):
                _add(tar, name, value)
            else:
                with open(value, "rb") as fh:
                    _add(tar, name, fh.read(), executable=os.access(value, os.X_OK))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, filename="", compresslevel=9) as gz:
        gz.write(raw.getvalue())
    data = compressed.getvalue()
    return SourceDir(data=data, sha256=hashlib.sha256(data).hexdigest(), program=program,
                     files=tuple(sorted(entries)))


def file_sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
