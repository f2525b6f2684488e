"""`sm-r-magic image build`: build the shared R image (and push it to ECR) from the package's container folder.

    sm-r-magic image build                          docker build -> sm-r-magic:latest (local Docker engine)
    sm-r-magic image build --push --repository r    ... and push to ECR <account>.dkr.ecr.<region>.amazonaws.com/r:latest
    sm-r-magic image build --codebuild --repository r
                                                    build in AWS CodeBuild with sagemaker-studio-image-build
                                                    (`sm-docker`), where no Docker engine runs (Studio, RStudio)
    %r_image build ...                              the same from a notebook (run_line)

The Dockerfile and build context come from the installed package (sm_r_magic/container), so no repository
checkout is needed. The base image is the Dockerfile's default (debian:bookworm-slim, pulled by Docker)
unless --base-image names another Debian bookworm image; where no registry is reachable (CI), the
registry-free base that scripts/build-base-image.sh makes (sm-r-magic-base:bookworm) is used when present.
"""

import argparse
import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from .errors import SmRMagicError
from .paths import CONTAINER_DIR, container_digest  # noqa: F401 (image.container_digest)

DEFAULT_TAG = "sm-r-magic:latest"
DIGEST_LABEL = "sm-r-magic.container-sha256"  # which container files an image was built from
DEFAULT_BASE = "debian:bookworm-slim"  # the Dockerfile's ARG BASE_IMAGE default
OFFLINE_BASE = "sm-r-magic-base:bookworm"  # scripts/build-base-image.sh (debootstrap + docker import)


@dataclass
class BuildResult:
    tag: str
    image_id: str
    seconds: float
    size_bytes: int
    base_image: str

    @property
    def size_mb(self):
        return self.size_bytes / 1e6

    def summary(self):
        return f"built {self.tag} in {self.seconds:.1f} s ({self.size_mb:.0f} MB, base {self.base_image})"


STDOUT = "stdout"  # default `out`: sys.stdout at call time (None: silent)


def _say(out, message):
    if out == STDOUT:
        out = sys.stdout
    if out is not None:
        print(message, file=out, flush=True)


def run(argv, *, input=None, env=None, cwd=None, capture=True, timeout=None):
    """Run a command; the one place image.py starts processes (tests replace it to record commands)."""
    try:
        return subprocess.run(argv, input=input, env=env, cwd=cwd, text=True, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.STDOUT if capture else None)
    except FileNotFoundError:
        raise SmRMagicError(f"{argv[0]} is not installed") from None


def _docker():
    from .docker_engine import docker_cli

    return docker_cli()


def _image_exists(docker, image):
    return run([docker, "image", "inspect", "--format", "{{.Id}}", image]).returncode == 0


def _check_engine(docker):
    proc = run([docker, "version", "--format", "{{.Server.Version}}"], timeout=30)
    if proc.returncode != 0:
        from .docker_engine import engine_error as _engine_error
        from .docker_engine import first_line as _first_line

        error = _engine_error(proc.stdout)
        if error:
            raise SmRMagicError(f"{error} (or build without a local engine: --codebuild)")
        raise SmRMagicError(f"docker does not work here: {_first_line(proc.stdout)}")


def choose_base_image(docker, base_image=None):
    """--base-image, else debian:bookworm-slim if present, else the registry-free base if present, else the
    default (docker build pulls it)."""
    if base_image:
        return base_image
    if _image_exists(docker, DEFAULT_BASE):
        return DEFAULT_BASE
    if _image_exists(docker, OFFLINE_BASE):
        return OFFLINE_BASE
    return DEFAULT_BASE


def build_args_list(build_args):
    args = []
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    return args


def build_image(tag=DEFAULT_TAG, *, base_image=None, build_args=None, no_cache=False, context=None,
                verbose=False, out=STDOUT, log_path=None):
    """Build the shared image with the local Docker engine (legacy builder: no buildx needed).

    build_args: e.g. {"EXTRA_R_PACKAGES": "r-cran-glmnet", "CRAN_PACKAGES": "...", "R_REPOS": "..."}.
    Returns a BuildResult; a failed build raises SmRMagicError with the tail of the build output."""
    docker = _docker()
    _check_engine(docker)
    context = context or CONTAINER_DIR
    if not os.path.isfile(os.path.join(context, "Dockerfile")):
        raise SmRMagicError(f"no Dockerfile in {context}: reinstall sm-r-magic")
    if not os.path.exists(os.path.join(context, ".dockerignore")):
        # An installed package may lack the dotfile (package data globs skip it): build from a clean copy.
        with tempfile.TemporaryDirectory(prefix="sm-r-magic-context-") as clean:
            shutil.copytree(context, clean, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests", "__init__.py"))
            with open(os.path.join(clean, ".dockerignore"), "w") as fh:
                fh.write("Dockerfile\n.dockerignore\n")
            return build_image(tag, base_image=base_image, build_args=build_args, no_cache=no_cache,
                               context=clean, verbose=verbose, out=out, log_path=log_path)
    base = choose_base_image(docker, base_image)
    argv = [docker, "build", "--force-rm", "-t", tag, "--build-arg", f"BASE_IMAGE={base}"]
    argv += build_args_list(build_args)
    argv += ["--label", f"{DIGEST_LABEL}={container_digest(context)}"]
    if no_cache:
        argv.append("--no-cache")
    argv.append(context)
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    _say(out, f"building {tag} from {base} (context {context})")
    started = time.monotonic()
    proc = run(argv, env=env, capture=not verbose)
    seconds = time.monotonic() - started
    if log_path and proc.stdout is not None:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        with open(log_path, "w") as fh:
            fh.write(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").splitlines()[-25:])
        if tail:
            _say(out, tail)
        hint = ""
        if base == DEFAULT_BASE and not _image_exists(docker, DEFAULT_BASE):
            hint = (f" ({DEFAULT_BASE} could not be pulled? Without a registry, make a base with "
                    "scripts/build-base-image.sh and pass --base-image " + OFFLINE_BASE + ")")
        raise SmRMagicError(f"docker build of {tag} failed after {seconds:.0f} s{hint}")
    inspect = run([docker, "image", "inspect", "--format", "{{.Id}} {{.Size}}", tag])
    image_id, size = (inspect.stdout or "? 0").split()[:2]
    result = BuildResult(tag=tag, image_id=image_id, seconds=seconds, size_bytes=int(size), base_image=base)
    _say(out, result.summary())
    return result


# -- ECR ------------------------------------------------------------------------------------------------

def ecr_client(region=None):
    try:
        import boto3
    except ImportError:
        raise SmRMagicError("--push needs boto3: pip install 'sm-r-magic[aws]'") from None
    return boto3.client("ecr", region_name=region or None)


def _aws_error(exc, what):
    try:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:  # pragma: no cover
        raise exc
    if isinstance(exc, NoCredentialsError):
        return SmRMagicError(f"{what}: no AWS credentials (configure them, e.g. aws configure or an instance role)")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return SmRMagicError(f"{what}: {err.get('Code')}: {err.get('Message')}")
    if isinstance(exc, BotoCoreError):
        return SmRMagicError(f"{what}: {exc}")
    return None


def ensure_repository(ecr, name):
    """The repository's URI, creating the repository when missing (image scanning on push)."""
    try:
        found = ecr.describe_repositories(repositoryNames=[name])["repositories"]
        return found[0]["repositoryUri"]
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code != "RepositoryNotFoundException":
            raise _aws_error(exc, f"cannot read ECR repository {name}") or exc
    try:
        created = ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True},
                                        imageTagMutability="MUTABLE")
        return created["repository"]["repositoryUri"]
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code == "RepositoryAlreadyExistsException":  # created meanwhile
            return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"]
        raise _aws_error(exc, f"cannot create ECR repository {name}") or exc


def registry_credentials(ecr, registry_id=None):
    """(username, password, registry host) from ECR GetAuthorizationToken (valid 12 hours)."""
    try:
        kwargs = {"registryIds": [registry_id]} if registry_id else {}
        data = ecr.get_authorization_token(**kwargs)["authorizationData"][0]
    except Exception as exc:
        raise _aws_error(exc, "cannot get an ECR authorization token") or exc
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    host = data["proxyEndpoint"].split("://", 1)[-1].rstrip("/")
    return user, password, host


def docker_login(host, user, password, docker=None):
    """docker login with the password on stdin (never on the command line)."""
    docker = docker or _docker()
    proc = run([docker, "login", "--username", user, "--password-stdin", host], input=password)
    if proc.returncode != 0:
        raise SmRMagicError(f"docker login {host} failed: {(proc.stdout or '').strip().splitlines()[-1:]}")


def tag_and_push(local_tag, remote, docker=None, out=STDOUT):
    docker = docker or _docker()
    proc = run([docker, "tag", local_tag, remote])
    if proc.returncode != 0:
        raise SmRMagicError(f"docker tag {local_tag} {remote} failed: {(proc.stdout or '').strip()}")
    _say(out, f"pushing {remote}")
    proc = run([docker, "push", remote])
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").strip().splitlines()[-5:])
        raise SmRMagicError(f"docker push {remote} failed: {tail}")
    return remote


def push_image(local_tag, repository, *, tag=None, region=None, ecr=None, out=STDOUT):
    """Create the ECR repository if missing, log in with the ECR token, tag and push. Returns the image URI."""
    ecr = ecr or ecr_client(region)
    docker = _docker()
    repo_uri = ensure_repository(ecr, repository)
    match = re.match(r"^(\d{12})\.dkr\.ecr\.", repo_uri)
    registry_id = match.group(1) if match else None
    user, password, host = registry_credentials(ecr, registry_id)
    docker_login(host, user, password, docker)
    tag = tag or (local_tag.rsplit(":", 1)[1] if ":" in local_tag.rsplit("/", 1)[-1] else "latest")
    return tag_and_push(local_tag, f"{repo_uri}:{tag}", docker, out=out)


# -- CodeBuild (sagemaker-studio-image-build) --------------------------------------------------------------

def codebuild(repository, *, tag="latest", base_image=None, build_args=None, role=None, bucket=None,
              extra_args=(), region=None, out=STDOUT):
    """Build and push in AWS CodeBuild with `sm-docker build` (pip install sagemaker-studio-image-build)."""
    sm_docker = shutil.which("sm-docker")
    if not sm_docker:
        raise SmRMagicError("--codebuild needs the sm-docker command: pip install sagemaker-studio-image-build "
                            "(it builds in AWS CodeBuild; the role needs a CodeBuild trust policy and ECR/S3 "
                            "permissions, see its README)")
    if not repository:
        raise SmRMagicError("--codebuild needs --repository NAME (the ECR repository to push to)")
    argv = [sm_docker, "build", ".", "--repository", f"{repository}:{tag}"]
    if role:
        argv += ["--role", role]
    if bucket:
        argv += ["--bucket", bucket]
    argv += list(extra_args)
    if base_image:
        argv += ["--build-arg", f"BASE_IMAGE={base_image}"]
    argv += build_args_list(build_args)
    # sm-docker uploads its current folder: a clean copy of the container folder (no caches).
    with tempfile.TemporaryDirectory(prefix="sm-r-magic-codebuild-") as ctx:
        shutil.copytree(CONTAINER_DIR, ctx, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))
        _say(out, "building in AWS CodeBuild: " + " ".join(shlex.quote(a) for a in argv))
        proc = run(argv, cwd=ctx, capture=False)
    if proc.returncode != 0:
        raise SmRMagicError(f"sm-docker build failed (exit status {proc.returncode}): see its output above")
    try:
        return f"{ensure_repository(ecr_client(region), repository)}:{tag}"
    except SmRMagicError:
        return f"{repository}:{tag}"


# -- command line and %r_image ---------------------------------------------------------------------------

def _parse_build_arg(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def add_build_arguments(parser):
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"Local image tag (default {DEFAULT_TAG}).")
    parser.add_argument("--base-image", help=f"Debian bookworm base image (default {DEFAULT_BASE}, or "
                                             f"{OFFLINE_BASE} when that exists and {DEFAULT_BASE} does not).")
    parser.add_argument("--build-arg", action="append", type=_parse_build_arg, metavar="KEY=VALUE",
                        help="Dockerfile build argument, e.g. EXTRA_R_PACKAGES='r-cran-glmnet', "
                             "CRAN_PACKAGES=..., R_REPOS=..., EXTRA_APT_PACKAGES=... (repeatable).")
    parser.add_argument("--no-cache", action="store_true", help="Rebuild every layer.")
    parser.add_argument("--verbose", "-v", action="store_true", help="Stream the docker build output.")
    parser.add_argument("--push", action="store_true",
                        help="Push to ECR (creates the repository if missing) and print the image URI.")
    parser.add_argument("--repository", metavar="NAME", help="ECR repository name for --push / --codebuild.")
    parser.add_argument("--remote-tag", metavar="TAG", help="Tag in ECR (default: the local tag's).")
    parser.add_argument("--region", help="AWS region (default: boto3's).")
    parser.add_argument("--codebuild", action="store_true",
                        help="Build in AWS CodeBuild with sagemaker-studio-image-build (sm-docker), for "
                             "places without a Docker engine (SageMaker Studio, RStudio on SageMaker).")
    parser.add_argument("--role", help="--codebuild: IAM role for CodeBuild (default: sm-docker's).")
    parser.add_argument("--bucket", help="--codebuild: S3 bucket for the build context (default: sm-docker's).")


def build_command(args, out=STDOUT):
    """What `sm-r-magic image build` and `%r_image build` do. Returns {"tag", "uri", "build"}."""
    build_args = dict(args.build_arg or [])
    local_tag = args.tag
    remote_tag = args.remote_tag or (local_tag.rsplit(":", 1)[1] if ":" in local_tag.rsplit("/", 1)[-1] else "latest")
    if (args.push or args.codebuild) and not args.repository:
        raise SmRMagicError(f"--{'push' if args.push else 'codebuild'} needs --repository NAME (an ECR repository "
                            "name, created when missing)")
    if args.codebuild:
        uri = codebuild(args.repository, tag=remote_tag, base_image=args.base_image, build_args=build_args,
                        role=args.role, bucket=args.bucket, region=args.region, out=out)
        _print_config_hint(uri, out)
        return {"tag": None, "uri": uri, "build": None}
    result = build_image(local_tag, base_image=args.base_image, build_args=build_args, no_cache=args.no_cache,
                         verbose=args.verbose, out=out)
    uri = local_tag
    if args.push:
        uri = push_image(local_tag, args.repository, tag=remote_tag, region=args.region, out=out)
        _print_config_hint(uri, out)
    return {"tag": local_tag, "uri": uri, "build": result}


def _print_config_hint(uri, out):
    _say(out, f"image URI: {uri}")
    _say(out, f'use it with:  %config RMagic.image = "{uri}"   (or export SM_R_MAGIC_IMAGE={uri})')


def register(subparsers):
    image = subparsers.add_parser("image", help="Build and push the shared R image.",
                                  description="Build (and push) the shared R container image.")
    image_sub = image.add_subparsers(dest="image_command", metavar="ACTION")
    build = image_sub.add_parser("build", help="Build the image with the local Docker engine (or CodeBuild).",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_arguments(build)
    build.set_defaults(func=lambda args: (build_command(args), 0)[1])
    image.set_defaults(func=lambda args: (image.print_help(), 2)[1])


class _LineParser(argparse.ArgumentParser):
    def error(self, message):
        raise SmRMagicError(f"%r_image: {message}")

    def exit(self, status=0, message=None):
        if message:
            print(message)
        raise _HelpShown()


class _HelpShown(Exception):
    pass


def run_line(line, out=STDOUT):
    """`%r_image build [options]`: the same options as `sm-r-magic image build`. Returns the image URI
    (the local tag, or the ECR URI with --push/--codebuild), or None when help was shown."""
    parser = _LineParser(prog="%r_image", description="Build (and push) the shared R image.")
    sub = parser.add_subparsers(dest="action", metavar="build", parser_class=_LineParser)
    add_build_arguments(sub.add_parser("build", help="Build the image."))
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise SmRMagicError(f"%r_image: cannot parse the options ({exc})") from None
    try:
        args = parser.parse_args(argv)
        if args.action != "build":
            parser.print_help()
            return None
    except _HelpShown:
        return None
    return build_command(args, out=out)["uri"]
