"""Where data lives: a local path, a file:// URI or an s3:// URI. One place tells them apart, so every backend
and the container's Python helper read a user's location the same way."""

import os
from dataclasses import dataclass

from .errors import SmRMagicError

S3 = "s3://"
FILE = "file://"


def is_s3(uri):
    return str(uri).startswith(S3)


def path_of(uri):
    """The path of a file:// URI or a plain path (an s3:// URI is returned unchanged)."""
    uri = str(uri)
    return uri[len(FILE):] if uri.startswith(FILE) else uri


def local_path(uri, option, must_exist=True):
    """A plain path or file:// URI as an absolute path; a missing path is the user's to fix."""
    path = os.path.abspath(os.path.expanduser(path_of(uri)))
    if must_exist and not os.path.exists(path):
        raise SmRMagicError(f"{option}: {uri} does not exist: give an existing file or folder, or an s3:// URI")
    return path


def split_s3(uri):
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[len(S3):].partition("/")
    return bucket, key


@dataclass(frozen=True)
class Staged:
    """A user's data as a request names it (`uri`), and what must be uploaded for it to be there: `source`, a
    local file or folder (None when the data is already where the request says), with `files` its
    (key under uri, local path) pairs for a folder. Backends return it from data_uri()/model_data_uri() and take
    it back in upload(): nothing is remembered in between."""

    uri: str
    source: str = None
    files: tuple = ()

    def __str__(self):
        return self.uri
