"""Docker helpers for tests: is an engine answering, and an up-to-date shared image (cached build)."""

import os
import shutil
import subprocess

import pytest

# A separate tag keeps parallel checkouts from rebuilding one another's image.
IMAGE = os.environ.get("SM_R_MAGIC_TEST_IMAGE", "sm-r-magic:latest")


def engine_problem():
    """None when a Docker engine answers, else why not (the skip reason)."""
    docker = shutil.which("docker")
    if not docker:
        return "no docker client installed (make test installs docker.io)"
    try:
        proc = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True,
                              timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20 s"
    if proc.returncode != 0:
        return ("no Docker engine answers (start one with scripts/ensure-docker.sh): "
                + (proc.stderr.strip().splitlines() or ["?"])[0])
    return None


def require_engine():
    """Skip the test, saying why, when no Docker engine answers."""
    problem = engine_problem()
    if problem:
        pytest.skip(problem)


def require_image(tag=IMAGE):
    """An engine and the current image (ensure_image) for a docker test, else skip -> the image's tag."""
    require_engine()
    return ensure_image(tag)


def ensure_image(tag=IMAGE):
    """Build the image from the package's container folder; every layer is cached when nothing changed
    (~1 s), so the tests always run the current entrypoint. Skips when no base image can be had."""
    from sm_r_magic import image
    from sm_r_magic.backends.docker import docker_cli

    docker = docker_cli()
    base = image.choose_base_image(docker)
    if not image._image_exists(docker, base) and not image._image_exists(docker, tag):
        pytest.skip(f"neither {tag} nor a base image ({image.DEFAULT_BASE} or {image.OFFLINE_BASE}) is here "
                    "and no registry is reachable: run `make image` first")
    return image.build_image(tag, out=None)


def containers(label_value=None, name=None):
    """Names of containers (running or not) with the job label or name."""
    args = ["docker", "ps", "-a", "--format", "{{.Names}}"]
    if label_value:
        args += ["--filter", f"label=sm-r-magic.job={label_value}"]
    if name:
        args += ["--filter", f"name=^{name}$"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()
