"""The Docker engine as sm-r-magic uses it: which client, whether the engine answers, whether an image is
there, and the names our containers get. Shared by the docker backend and `sm-r-magic image`."""

import os
import re
import shutil
import subprocess

from .errors import SmRMagicError

CONTAINER_PREFIX = "smr-"
BUILD_HINT = "build it with `make image` or `sm-r-magic image build`"
ENGINE_HINT = "start Docker or use --backend local"


def docker_cli():
    """The docker client: $SM_R_MAGIC_DOCKER, else `docker` on PATH."""
    name = os.environ.get("SM_R_MAGIC_DOCKER") or "docker"
    path = shutil.which(name)
    if not path:
        raise SmRMagicError(f"Docker is not installed here ({name} not found): install Docker "
                            "(Debian: apt-get install docker.io), or use --backend local")
    return path


def first_line(text):
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            return line
    return ""


def engine_error(stderr):
    text = (stderr or "").strip()
    engine_down = ("Cannot connect to the Docker daemon" in text or "Is the docker daemon running" in text
                   or "error during connect" in text or "connection refused" in text.lower()
                   or "no such file or directory" in text.lower() and "sock" in text)
    if engine_down or "permission denied" in text.lower():
        detail = first_line(text)
        if "permission denied" in text.lower():
            return SmRMagicError(f"cannot talk to the Docker engine ({detail}): add yourself to the docker group, "
                                 "or use --backend local")
        return SmRMagicError(f"the Docker engine is not running ({detail}): {ENGINE_HINT}")
    return None


def check_image(image, docker=None, timeout=30):
    """Raise a one-line SmRMagicError unless the engine answers and has `image`.
    Returns (image id, the container-files digest label or "")."""
    docker = docker or docker_cli()
    fmt = '{{.Id}} {{if .Config.Labels}}{{index .Config.Labels "sm-r-magic.container-sha256"}}{{end}}'
    try:
        proc = subprocess.run([docker, "image", "inspect", "--format", fmt, image], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SmRMagicError(f"the Docker engine did not answer within {timeout} s: {ENGINE_HINT}") from None
    if proc.returncode == 0:
        parts = proc.stdout.split()
        return parts[0], (parts[1] if len(parts) > 1 and parts[1] != "<no value>" else "")
    error = engine_error(proc.stderr)
    if error:
        raise error
    if "no such image" in proc.stderr.lower() or "not found" in proc.stderr.lower():
        raise SmRMagicError(f"the image {image} is not in the local Docker engine: {BUILD_HINT} "
                            f"(or docker pull it; RMagic.image names it)")
    raise SmRMagicError(f"docker image inspect {image} failed: {first_line(proc.stderr)}")


def container_name(job_name):
    """A valid, recognisable container name for a job or endpoint."""
    name = re.sub(r"[^a-zA-Z0-9_.-]", "-", job_name)
    return (CONTAINER_PREFIX + name)[:128]
