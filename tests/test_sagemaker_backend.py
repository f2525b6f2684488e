"""The sagemaker backend over real HTTP against a moto server (tests/support/moto_server.py).

Every request crosses HTTP and is validated by botocore against SageMaker's service model before moto
accepts it. moto 5 makes jobs Completed at once and writes no logs: tests drive job state through moto's
in-process backend objects and write log events with the Logs API. Where moto has no implementation
(StopTrainingJob, DescribeUserProfile, InvokeEndpoint errors, an S3 store without conditional writes)
botocore's Stubber stands in, and the test says so.
"""

import datetime
import json
import subprocess
import sys
import threading
import time

import pytest
from botocore.stub import ANY, Stubber

from sm_r_magic import api, aws, sourcedir, spec
from sm_r_magic.backends import get_backend
from sm_r_magic.backends.sagemaker import SageMakerBackend
from sm_r_magic.errors import JobFailed, SmRMagicError

from .conftest import run_cell
from .support.moto_server import BUCKET, IMAGE, ROLE, capture, count_writes, put_log_events, s3_keys

TRAIN = 'df <- read.csv(file.path(sm_channel("train"), "mtcars.csv"))\nsaveRDS(lm(mpg ~ wt, df), file.path(sm_model_dir(), "m.rds"))\n'
PROCESS = 'df <- read.csv(file.path(sm_input("raw"), "mtcars.csv"))\nwrite.csv(df, file.path(sm_output("out"), "o.csv"))\n'


def utc(seconds_ago=0):
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)


def on_create(backend, kind, change):
    """After each Create*Job, apply change(moto_job) to moto's in-process job (moto: Completed at once)."""
    operation = "CreateTrainingJob" if kind == "training" else "CreateProcessingJob"

    def hook(parsed, **kwargs):
        name = parsed[("TrainingJobArn" if kind == "training" else "ProcessingJobArn")].rsplit("/", 1)[1]
        jobs = backend_jobs(kind)
        change(jobs[name])

    backend.sm.meta.events.register(f"after-call.sagemaker.{operation}", hook)


def backend_jobs(kind):
    from moto.backends import get_backend as moto_backend

    sagemaker = moto_backend("sagemaker")["123456789012"]["us-east-1"]
    return sagemaker.training_jobs if kind == "training" else sagemaker.processing_jobs


# -- import cost ---------------------------------------------------------------------------------------------

def test_load_ext_does_not_import_boto3():
    code = ("import sys\nfrom IPython.testing.globalipapp import start_ipython\nip = start_ipython()\n"
            "ip.run_line_magic('load_ext', 'sm_r_magic')\nimport sm_r_magic.aws\n"
            "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


# -- request shapes ------------------------------------------------------------------------------------------

def test_every_request_shape_is_accepted(sm, moto_server):
    """botocore validates each request against SageMaker's model; moto accepts and describes it back."""
    code = f"s3://{BUCKET}/p/sourcedir/abc/sourcedir.tar.gz"
    processing = spec.processing_request(
        job_name=spec.unique_name("shape-proc"), image=IMAGE, role=ROLE, code_uri=code,
        inputs={"raw": "s3://b/raw/", "lookup": "s3://b/lookup.csv"},
        outputs={"train": "s3://b/out/train", "test": "s3://b/out/test"}, instance_type="ml.c5.xlarge",
        instance_count=2, volume_size=50, max_runtime=3600, environment={"A": "1"}, sourcedir_sha256="abc")
    minimal_processing = spec.processing_request(job_name=spec.unique_name("shape-min"), image=IMAGE, role=ROLE,
                                                 code_uri=code, inputs={}, outputs={})
    training = spec.training_request(
        job_name=spec.unique_name("shape-train"), image=IMAGE, role=ROLE, code_uri=code,
        channels={"train": "s3://b/train/", "validation": "s3://b/val.csv"},
        hyperparameters={"alpha": 0.5, "formula": "mpg ~ wt", "flags": [1, 2], "deep": {"a": True}},
        output_path="s3://b/output", instance_count=2, environment={"X": "y"}, sourcedir_sha256="abc",
        spot=True, max_wait=7200, max_runtime=3600, checkpoint_uri="s3://b/ckpt",
        metric_definitions={"rmse": r"rmse: ([0-9.]+)"})
    minimal_training = spec.training_request(job_name=spec.unique_name("shape-tmin"), image=IMAGE, role=ROLE,
                                             code_uri=code, channels={}, hyperparameters={}, output_path="s3://b/o")
    for kind, request in [("processing", processing), ("processing", minimal_processing),
                          ("training", training), ("training", minimal_training)]:
        job = sm.submit(kind, request)
        desc = job.describe()
        assert desc[("TrainingJobName" if kind == "training" else "ProcessingJobName")] == job.name
    desc = sm.describe_job("training", training["TrainingJobName"])
    assert desc["EnableManagedSpotTraining"] is True
    assert desc["CheckpointConfig"] == {"S3Uri": "s3://b/ckpt", "LocalPath": "/opt/ml/checkpoints"}
    assert desc["HyperParameters"]["alpha"] == "0.5"
    assert json.loads(desc["HyperParameters"]["sagemaker_submit_directory"]) == code
    tags = {t["Key"]: t["Value"] for t in sm.sm.list_tags(ResourceArn=desc["TrainingJobArn"])["Tags"]}
    assert tags["sm-r-magic:sourcedir-sha256"] == "abc" and tags["sm-r-magic:version"]
    desc = sm.describe_job("processing", processing["ProcessingJobName"])
    assert desc["AppSpecification"]["ContainerEntrypoint"] == [spec.ENTRYPOINT, "process"]
    assert [i["InputName"] for i in desc["ProcessingInputs"]] == ["raw", "lookup", "code"]

    # endpoints: model (with inference code), real-time and serverless configs, endpoints
    for serverless in (None, (2048, 5)):
        suffix = "sls" if serverless else "rt"
        model = spec.model_request(model_name=spec.unique_name(f"m-{suffix}"), image=IMAGE, role=ROLE,
                                   model_data="s3://b/output/job/output/model.tar.gz", code_uri=code,
                                   environment={"SM_R_MAGIC_WORKERS": "2"}, sourcedir_sha256="abc")
        config = spec.endpoint_config_request(config_name=spec.unique_name(f"c-{suffix}"),
                                              model_name=model["ModelName"], instance_count=2, serverless=serverless)
        endpoint = spec.endpoint_request(endpoint_name=spec.unique_name(f"e-{suffix}"),
                                         config_name=config["EndpointConfigName"])
        predictor = sm.deploy({"model": model, "endpoint_config": config, "endpoint": endpoint})
        assert predictor.status == "InService"
        variant = sm.sm.describe_endpoint_config(EndpointConfigName=config["EndpointConfigName"])[
            "ProductionVariants"][0]
        if serverless:
            assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
            assert "InstanceType" not in variant
        else:
            assert variant["InstanceType"] == "ml.m5.large" and variant["InitialInstanceCount"] == 2
        container = sm.sm.describe_model(ModelName=model["ModelName"])["PrimaryContainer"]
        assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == code


def test_requests_are_validated_before_sending(sm):
    """botocore checks types and required members against the service model (moto checks little)."""
    from botocore.exceptions import ParamValidationError

    request = spec.training_request(job_name="ok-name", image=IMAGE, role=ROLE, code_uri="s3://b/c.tar.gz",
                                    channels={}, hyperparameters={}, output_path="s3://b/o")
    request["ResourceConfig"]["InstanceCount"] = "two"  # not an integer
    with pytest.raises(ParamValidationError, match="InstanceCount"):
        sm.submit("training", request)
    request["ResourceConfig"]["InstanceCount"] = 1
    del request["OutputDataConfig"]
    with pytest.raises(ParamValidationError, match="OutputDataConfig"):
        sm.submit("training", request)


# -- URIs ----------------------------------------------------------------------------------------------------

def test_uris_are_content_addressed_and_pure(sm, moto_server, tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")
    (data / "sub").mkdir()
    (data / "sub" / "b.csv").write_text("y\n2\n")
    calls = sm.api_calls
    first = sm.data_uri(str(data), "--channel train").uri
    assert first.startswith(f"s3://{BUCKET}/sm-r-magic/data/") and first.endswith("/d/")
    assert sm.data_uri(str(data), "--channel train").uri == first
    assert sm.data_uri("s3://other/x.csv", "--input raw").uri == "s3://other/x.csv"
    single = sm.data_uri(str(data / "a.csv"), "--input raw").uri
    assert single.endswith("/a.csv") and "/data/" in single
    (data / "sub" / "b.csv").write_text("y\n3\n")
    assert sm.data_uri(str(data), "--channel train").uri != first  # content changed: another address
    with pytest.raises(SmRMagicError, match="does-not-exist does not exist"):
        sm.data_uri(str(tmp_path / "does-not-exist"), "--channel train")
    with pytest.raises(SmRMagicError, match="s3://"):
        sm.output_uri(str(tmp_path / "out"), "--output train")
    assert sm.training_output_path() == f"s3://{BUCKET}/sm-r-magic/output"
    assert sm.processing_output_uri("job-1", "train") == f"s3://{BUCKET}/sm-r-magic/output/job-1/train"
    assert sm.api_calls - calls <= 1  # at most the one GetCallerIdentity for the default bucket name
    assert s3_keys(moto_server) == []  # nothing uploaded by naming


# -- the magics end to end -----------------------------------------------------------------------------------

def configure_shell(shell, bucket=None):
    shell.run_line_magic("config", f'RMagic.role = "{ROLE}"')
    shell.run_line_magic("config", f'RMagic.image = "{IMAGE}"')
    shell.run_line_magic("config", 'RMagic.progress = "text"')
    if bucket:
        shell.run_line_magic("config", f'RMagic.bucket = "{bucket}"')
    from sm_r_magic import config

    return get_backend("sagemaker", config.current())


def test_magics_end_to_end(shell, moto_server, fast, mtcars_csv, capsys):
    backend = configure_shell(shell)
    trained = capture(backend, "CreateTrainingJob")
    result, error = run_cell(shell, "r_train", f'--backend sagemaker --name mtcars-lm --channel train={mtcars_csv} '
                                               '--hp formula="mpg ~ wt" --instance-type ml.c5.xlarge', TRAIN)
    assert error is None, error
    job = shell.user_ns["mtcars_lm"]
    assert result is None  # the cell printed the summary: no empty Out[N] (tests/test_terminal.py)
    assert job.backend_name == "sagemaker" and job.status == "Completed"
    assert job.model_data == f"s3://{BUCKET}/sm-r-magic/output/{job.name}/output/model.tar.gz"
    assert job.hyperparameters == {"formula": "mpg ~ wt"}
    out = capsys.readouterr().out
    assert f"training job {job.name} on sagemaker" in out and "Completed" in out
    (request,) = trained
    assert request["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
    channel = request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    keys = s3_keys(moto_server)
    assert channel.split(f"{BUCKET}/", 1)[1] in keys
    assert any(k.endswith("/sourcedir.tar.gz") for k in keys)

    result, error = run_cell(shell, "r_processing", f"--backend sagemaker --name prep --input raw={mtcars_csv} "
                                                    "--output out --output copy=s3://elsewhere/copy", PROCESS)
    assert error is None, error
    prep = shell.user_ns["prep"]
    assert prep.outputs == {"out": f"s3://{BUCKET}/sm-r-magic/output/{prep.name}/out",
                            "copy": "s3://elsewhere/copy"}

    attached = shell.run_line_magic("r_attach", "mtcars-lm --backend sagemaker")
    assert attached.name == job.name and attached.kind == "training"
    shell.run_line_magic("r_jobs", "--backend sagemaker")
    listed = capsys.readouterr().out
    assert job.name in listed and prep.name in listed

    # a local --output path cannot be a sagemaker output: one line, nothing created
    result, error = run_cell(shell, "r_processing", f"--backend sagemaker --output out={mtcars_csv.parent}/o",
                             PROCESS)
    assert type(error).__name__ == "UsageError" and "\n" not in str(error) and "s3://" in str(error)


def test_async_and_dry_run(shell, moto_server, fast, mtcars_csv, capsys):
    configure_shell(shell)
    result, error = run_cell(shell, "r_train", f"--backend sagemaker --dry-run --channel train={mtcars_csv}", TRAIN)
    assert error is None
    printed = json.loads(capsys.readouterr().out)
    assert printed["AlgorithmSpecification"]["TrainingImage"] == IMAGE and printed["RoleArn"] == ROLE
    assert s3_keys(moto_server) == []  # dry run: nothing uploaded
    result, error = run_cell(shell, "r_train", "--backend sagemaker --async --as j", TRAIN)
    assert error is None and shell.user_ns["j"].backend_name == "sagemaker"


def test_spot_and_checkpoint_options(shell, moto_server, fast, capsys):
    configure_shell(shell)
    line = "--backend sagemaker --dry-run --spot --max-run 3600 --max-wait 7200 --checkpoint-uri s3://b/ckpt/"
    _, error = run_cell(shell, "r_train", line, TRAIN)
    assert error is None
    printed = json.loads(capsys.readouterr().out)
    assert printed["EnableManagedSpotTraining"] is True
    assert printed["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert printed["CheckpointConfig"] == {"S3Uri": "s3://b/ckpt/", "LocalPath": "/opt/ml/checkpoints"}
    for bad, expected in [("--checkpoint-uri ./ckpt", "give an s3:// URI"),
                          ("--max-wait 7200", "--max-wait goes with --spot"),
                          ("--spot --max-run 3600 --max-wait 60", "shorter than the maximum runtime 3600")]:
        _, error = run_cell(shell, "r_train", f"--backend sagemaker {bad}", TRAIN)
        assert type(error).__name__ == "UsageError" and expected in str(error), (bad, error)
    assert moto_server.client("s3").list_buckets()["Buckets"] == []  # nothing uploaded
    assert moto_server.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


def test_keep_alive_asks_for_a_warm_pool(shell, moto_server, fast, capsys):
    """--keep-alive becomes ResourceConfig.KeepAlivePeriodInSeconds of the CreateTrainingJob SageMaker receives
    (moto accepts it); out of the service's range it is one line and nothing is created."""
    backend = configure_shell(shell)
    sent = capture(backend, "CreateTrainingJob")
    _, error = run_cell(shell, "r_train", "--backend sagemaker --name warm --keep-alive 900 --async", TRAIN)
    assert error is None, error
    assert sent[-1]["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 900
    job = moto_server.client("sagemaker").describe_training_job(TrainingJobName=shell.user_ns["warm"].name)
    assert job["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 900
    for bad in ("--keep-alive 0", "--keep-alive 999999"):
        _, error = run_cell(shell, "r_train", f"--backend sagemaker --name cold {bad}", TRAIN)
        assert type(error).__name__ == "UsageError" and "--keep-alive" in str(error), (bad, error)
    assert len(moto_server.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]) == 1


# -- dedup ---------------------------------------------------------------------------------------------------

def test_resubmission_uploads_nothing(sm, moto_server, mtcars_csv, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "one.csv").write_text("a\n1\n")
    (folder / "two.csv").write_text("b\n2\n")
    counts = count_writes(sm)

    def submit():
        return api.train(TRAIN, name="dedup", channels={"train": str(mtcars_csv), "more": str(folder)}, wait=False)

    first = submit()
    keys = s3_keys(moto_server)
    assert len(keys) == 4 and counts["written"] == 4  # code, mtcars.csv, one.csv, two.csv
    second = submit()
    assert second.name != first.name
    assert s3_keys(moto_server) == keys and counts["written"] == 4  # the same cell and data: nothing stored
    assert counts["refused"] == 2  # code and mtcars.csv were offered once each; the folder was listed
    api.processing(PROCESS, inputs={"raw": str(mtcars_csv)}, wait=False)
    assert len(s3_keys(moto_server)) == 5 and counts["written"] == 5  # new code only; the data is already there
    (folder / "two.csv").write_text("b\n3\n")
    submit()
    assert len(s3_keys(moto_server)) == 7  # a changed folder is a new folder (both files under a new hash)

    # an interrupted folder upload is completed next time (only the missing object is sent)
    staged = sm.data_uri(str(folder), "--channel more")
    uri = staged.uri
    bucket, key = aws.split_s3(uri)
    sm.client("s3").delete_object(Bucket=bucket, Key=key + "one.csv")
    before = counts["written"]
    with sourcedir.build("train.R", TRAIN, (), None) as code:
        assert sm.upload(code, [staged]) == [uri + "one.csv"]
    assert counts["written"] == before + 1


def test_first_submission_is_three_requests_and_larger_data_is_never_sent_twice(sm, moto_server, tmp_path,
                                                                                monkeypatch):
    small = tmp_path / "small" / "mtcars.csv"
    small.parent.mkdir()
    small.write_text("mpg,wt\n21,2.62\n22.8,2.32\n")
    sm.check_ready()
    sm.staging.ensure_bucket()
    counts = count_writes(sm)
    calls = sm.api_calls
    api.train(TRAIN, channels={"train": str(small)}, wait=False)
    assert sm.api_calls - calls == 3  # PutObject of the code and of the data, CreateTrainingJob: no lookups
    assert counts == {"written": 2, "refused": 0, "heads": 0}

    # above the conditional-put size a file is looked up first: an existing one is not sent again
    monkeypatch.setattr(type(sm.staging), "PUT_IF_ABSENT_LIMIT", 16)
    big = tmp_path / "big" / "mtcars.csv"
    big.parent.mkdir()
    big.write_text("mpg,wt\n" + "21,2.62\n" * 50)
    api.train(TRAIN + "# 2\n", channels={"train": str(big)}, wait=False)
    assert counts == {"written": 4, "refused": 0, "heads": 2}
    api.train(TRAIN + "# 2\n", channels={"train": str(big)}, wait=False)
    assert counts == {"written": 4, "refused": 0, "heads": 4}


def test_a_store_without_conditional_writes_gets_a_lookup_and_a_plain_put(sm, moto_server, tmp_path):
    """moto implements conditional writes, so botocore's Stubber stands in for a store that answers
    501 NotImplemented to If-None-Match: the file is looked up, then sent without the condition."""
    sm.check_ready()
    sm.staging.ensure_bucket()
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    staged = sm.data_uri(str(data), "--channel train")
    bucket, key = aws.split_s3(staged.uri)
    with Stubber(sm.client("s3")) as stub:
        stub.add_client_error("put_object", "NotImplemented", "A header you provided implies functionality that "
                              "is not implemented", http_status_code=501)
        stub.add_client_error("head_object", "404", "Not Found", http_status_code=404)
        stub.add_response("put_object", {"ETag": '"e"'}, {"Bucket": bucket, "Key": key, "Body": ANY})  # no condition
        assert sm.upload(None, [staged]) == [staged.uri]
        stub.assert_no_pending_responses()


def test_code_and_data_go_up_together(sm, moto_server, mtcars_csv):
    """Each PutObject waits at a two-party barrier before it is sent: sent one after the other, the first
    would wait alone until the barrier's timeout breaks it and the upload fails."""
    sm.check_ready()
    sm.staging.ensure_bucket()
    barrier = threading.Barrier(2, timeout=30)

    def meet(**kwargs):  # returns None: a before-call handler's return value would replace the request
        barrier.wait()

    sm.client("s3").meta.events.register("before-call.s3.PutObject", meet)
    job = api.train(TRAIN, channels={"train": str(mtcars_csv)}, wait=False)
    assert len(s3_keys(moto_server)) == 2 and not barrier.broken
    assert job.describe()["TrainingJobStatus"]


def test_default_bucket_created_only_at_upload(sm, moto_server, settings):
    settings.region = "eu-west-1"
    s3 = moto_server.client("s3")
    sm.check_ready()
    assert sm.staging.bucket() == "sagemaker-eu-west-1-123456789012"
    assert s3.list_buckets()["Buckets"] == []
    api.train(TRAIN, wait=False)
    (bucket,) = s3.list_buckets()["Buckets"]
    assert bucket["Name"] == "sagemaker-eu-west-1-123456789012"
    assert s3.get_bucket_location(Bucket=bucket["Name"])["LocationConstraint"] == "eu-west-1"


def test_configured_bucket_must_exist(sm, moto_server, settings):
    settings.bucket = "my-team-bucket"
    with pytest.raises(SmRMagicError, match="my-team-bucket does not exist"):
        api.train(TRAIN, wait=False)
    moto_server.client("s3").create_bucket(Bucket="my-team-bucket")
    job = api.train(TRAIN, wait=False)
    assert json.loads(job.describe()["HyperParameters"]["sagemaker_submit_directory"]).startswith(
        "s3://my-team-bucket/sm-r-magic/sourcedir/")


def test_upload_failure_is_one_line(sm, moto_server):
    sm.check_ready()
    sm.staging.ensure_bucket()
    with Stubber(sm.client("s3")) as stub:
        stub.add_client_error("put_object", "AccessDenied", "Access Denied", http_status_code=403)
        with pytest.raises(SmRMagicError, match="could not upload to s3://sagemaker-us-east-1-123456789012/sm-r-magic"):
            api.train(TRAIN, wait=False)


# -- missing settings ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, value, expected", [
    ("image", "", "sm-r-magic image build --push"),
    ("image", "sm-r-magic:latest", "sm-r-magic image build --push"),  # the default local tag
    ("image", "docker.io/library/r-base:4.2.2", "is not in Amazon ECR"),  # SageMaker pulls from ECR only
    ("role", "", "RMagic.role"),
    ("role", "arn:aws:iam::123:role/short-account", "not an IAM role ARN"),
    ("bucket", "Not_A_Bucket", "not a valid S3 bucket name"),
    ("region", None, "RMagic.region"),
])
def test_missing_setting_is_one_line_and_uploads_nothing(shell, moto_server, fast, monkeypatch, setting, value,
                                                         expected, mtcars_csv):
    configure_shell(shell)
    if setting == "region":
        monkeypatch.delenv("AWS_DEFAULT_REGION")
    else:
        shell.run_line_magic("config", f"RMagic.{setting} = {value!r}")
    result, error = run_cell(shell, "r_train", f"--backend sagemaker --channel train={mtcars_csv}", TRAIN)
    assert type(error).__name__ == "UsageError", error
    message = str(error)
    assert expected in message and "\n" not in message
    if setting in ("image", "role"):
        assert "SM_R_MAGIC_" + setting.upper() in message
    assert moto_server.client("s3").list_buckets()["Buckets"] == []  # nothing created, nothing uploaded
    assert moto_server.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


def test_settings_from_environment(moto_server, monkeypatch, settings, fast):
    monkeypatch.setenv("SM_R_MAGIC_ROLE", ROLE)
    monkeypatch.setenv("SM_R_MAGIC_IMAGE", IMAGE)
    from sm_r_magic import config

    fresh = config.RMagic()
    monkeypatch.setattr(config, "_current", fresh)
    backend = get_backend("sagemaker", fresh)
    backend.check_ready()
    assert backend.role() == ROLE and backend.image() == IMAGE


def test_no_credentials_is_one_line(sm, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    sm.config.role = ""
    with pytest.raises(SmRMagicError, match="no AWS credentials"):
        sm.check_ready()


# -- role discovery ------------------------------------------------------------------------------------------

def test_role_from_notebook_instance_metadata(sm, moto_server, tmp_path, monkeypatch):
    sm.config.role = ""
    role = "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole-1"
    moto_server.client("sagemaker").create_notebook_instance(NotebookInstanceName="my-notebook",
                                                            InstanceType="ml.t3.medium", RoleArn=role)
    metadata = tmp_path / "resource-metadata.json"
    metadata.write_text(json.dumps({"ResourceArn": "arn:...:notebook-instance/my-notebook",
                                    "ResourceName": "my-notebook"}))
    monkeypatch.setenv("SM_R_MAGIC_METADATA_FILE", str(metadata))
    sm.check_ready()
    assert sm.role() == role


def test_role_from_studio_user_profile_and_domain(sm, moto_server, tmp_path, monkeypatch):
    """moto has DescribeDomain but no DescribeUserProfile: the profile's role comes through a Stubber; a
    profile without its own role falls back to the domain's default role (moto)."""
    sm.config.role = ""
    domain_role = "arn:aws:iam::123456789012:role/StudioDefault"
    domain = moto_server.client("sagemaker").create_domain(
        DomainName="studio", AuthMode="IAM", DefaultUserSettings={"ExecutionRole": domain_role},
        SubnetIds=["subnet-1"], VpcId="vpc-1")
    domain_id = domain["DomainArn"].rsplit("/", 1)[1]
    metadata = tmp_path / "resource-metadata.json"
    metadata.write_text(json.dumps({"DomainId": domain_id, "UserProfileName": "alice", "AppType": "JupyterLab"}))
    monkeypatch.setenv("SM_R_MAGIC_METADATA_FILE", str(metadata))

    user_role = "arn:aws:iam::123456789012:role/AliceRole"
    with Stubber(sm.sm) as stub:
        stub.add_response("describe_user_profile", {"UserSettings": {"ExecutionRole": user_role}},
                          {"DomainId": domain_id, "UserProfileName": "alice"})
        assert sm.session.discover_role() == user_role
    # no role on the profile (moto: DescribeUserProfile fails) -> the domain's default execution role
    assert sm.session.discover_role() == domain_role


def test_role_from_assumed_role_identity(sm, moto_server, monkeypatch):
    sm.config.role = ""
    iam = moto_server.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    arn = iam.create_role(RoleName="NotebookRole", Path="/teams/ds/", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    creds = moto_server.client("sts").assume_role(RoleArn=arn, RoleSessionName="me")["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", creds["SessionToken"])
    fresh = SageMakerBackend(sm.config)
    assert fresh.session.identity()["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/NotebookRole/")
    assert fresh.role() == "arn:aws:iam::123456789012:role/teams/ds/NotebookRole"  # the path, from IAM


def test_role_conversions():
    assert aws.role_from_assumed_role("arn:aws:sts::123456789012:assumed-role/MyRole/botocore-session-1") == \
        "arn:aws:iam::123456789012:role/MyRole"
    assert aws.role_from_assumed_role("arn:aws-cn:sts::123456789012:assumed-role/R/s") == \
        "arn:aws-cn:iam::123456789012:role/R"
    assert aws.role_from_assumed_role("arn:aws:iam::123456789012:user/me") is None
    assert aws.image_has_registry(IMAGE) and aws.image_has_registry("localhost:5000/sm-r-magic:1")
    assert not aws.image_has_registry("sm-r-magic:latest") and not aws.image_has_registry("library/r:4")


def test_role_name_becomes_arn(sm, moto_server, tmp_path, monkeypatch):
    iam = moto_server.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="MyExecRole", Path="/service-role/", AssumeRolePolicyDocument=trust)
    sm.config.role = "MyExecRole"
    assert sm.role() == "arn:aws:iam::123456789012:role/service-role/MyExecRole"  # the path, from IAM
    # IAM does not know it (or GetRole is denied): SageMaker's own roles live under /service-role/
    sm.config.role = "AmazonSageMaker-ExecutionRole-20240101T000000"
    assert sm.role() == "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole-20240101T000000"
    sm.config.role = "Other"
    assert sm.role() == "arn:aws:iam::123456789012:role/Other"
    sm.config.role = "teams/Other"
    assert sm.role() == "arn:aws:iam::123456789012:role/teams/Other"
    # Studio apps also write the role into the metadata file: no API call needed
    metadata = tmp_path / "resource-metadata.json"
    metadata.write_text(json.dumps({"DomainId": "d-none", "UserProfileName": "u",
                                    "ExecutionRoleArn": "arn:aws:iam::123456789012:role/service-role/StudioRole"}))
    monkeypatch.setenv(aws.METADATA_ENV, str(metadata))
    sm.config.role = ""
    assert SageMakerBackend(sm.config).role() == "arn:aws:iam::123456789012:role/service-role/StudioRole"


# -- watching: status transitions, failure display, billable time -------------------------------------------

def test_status_transitions_and_failure_display(sm, moto_server, capsys):
    job = api.train(TRAIN, name="watched", wait=False)
    moto_job = backend_jobs("training")[job.name]
    start = utc(30)
    moto_job.training_job_status = "InProgress"
    moto_job.secondary_status = "Starting"
    moto_job.secondary_status_transitions = [{"Status": "Starting", "StartTime": start,
                                              "StatusMessage": "Preparing the instances for training"}]
    assert job.status == "InProgress" and job.secondary_status == "Starting" and not job.done

    def drive():
        time.sleep(0.3)
        moto_job.secondary_status = "Training"
        moto_job.secondary_status_transitions = [
            dict(moto_job.secondary_status_transitions[0], EndTime=utc(20)),
            {"Status": "Training", "StartTime": utc(20), "StatusMessage": "Training image download completed."}]
        time.sleep(0.3)
        moto_job.training_job_status = "Failed"
        moto_job.secondary_status = "Failed"
        moto_job.failure_reason = "AlgorithmError: Error in lm(): object 'mpgg' not found"
        moto_job.billable_time_in_seconds = 42

    thread = threading.Thread(target=drive)
    thread.start()
    job.wait(progress="text", timeout=20)
    thread.join()
    out = capsys.readouterr().out
    assert "[sm-r-magic] Starting" in out and "[sm-r-magic] Training" in out
    assert "Failed" in out and "object 'mpgg' not found" in out and "billable 42s" in out
    assert [t["Status"] for t in job.transitions] == ["Starting", "Training"]
    assert job.failure_reason.startswith("AlgorithmError")


def test_failed_job_in_a_cell_shows_the_reason(shell, moto_server, fast, capsys):
    backend = configure_shell(shell)

    def fail(moto_job):
        moto_job.training_job_status = "Failed"
        moto_job.failure_reason = "AlgorithmError: Error in eval(): boom"

    on_create(backend, "training", fail)
    result, error = run_cell(shell, "r_train", "--backend sagemaker --name doomed", "stop('boom')\n")
    assert isinstance(error, JobFailed)
    rendered = "\n".join(error._render_traceback_())
    # CloudWatch had no log lines: the text view printed the reason after the summary, once
    assert capsys.readouterr().out.count("Error in eval(): boom") == 1
    assert "shown above" in rendered and "doomed" in rendered and "boom" in str(error)
    assert shell.user_ns["doomed"].status == "Failed"


def test_processing_failure_uses_exit_message(sm, moto_server, capsys):
    """SageMaker puts the container's /opt/ml/output/message in ExitMessage; its FailureReason for a
    processing job is generic. The R error must be what the user sees."""
    def fail(moto_job):
        moto_job.processing_job_status = "Failed"
        moto_job.exit_message = "Error in read.csv(): no such file\nTraceback (innermost last):\n  1: read.csv(f)"
        moto_job.failure_reason = "AlgorithmError: See job logs for more information"

    on_create(sm, "processing", fail)
    with pytest.raises(JobFailed) as info:
        api.processing(PROCESS)
    message = str(info.value)
    assert "Error in read.csv(): no such file" in message and "1: read.csv(f)" in message
    assert "AlgorithmError: See job logs" in message  # SageMaker's own word is kept, after the R error
    out = capsys.readouterr().out
    assert "Error in read.csv(): no such file" in out
    assert out.index("Error in read.csv()") < out.index("AlgorithmError")


def test_describes_are_cached_and_polling_backs_off(moto_server, settings, monkeypatch):
    monkeypatch.setattr(SageMakerBackend, "describe_ttl", 60.0)
    settings.image, settings.role = IMAGE, ROLE
    backend = get_backend("sagemaker", settings)
    jobs = [api.train(TRAIN, name=f"many-{i}", backend="sagemaker", wait=False) for i in range(20)]
    for job in jobs:
        backend_jobs("training")[job.name].training_job_status = "InProgress"
    backend.forget()
    calls = backend.api_calls
    for _ in range(10):  # ten rounds of a progress view asking everything of 20 jobs
        for job in jobs:
            job.status, job.done, job.secondary_status, job.transitions, job.elapsed
    assert backend.api_calls - calls == 20  # one describe per job
    assert SageMakerBackend.poll_interval == (5.0, 30.0)
    intervals = [jobs[0].refresh_interval(i) for i in range(8)]
    assert intervals[0] == 5.0 and intervals[-1] == 30.0 and intervals == sorted(intervals)
    # steady state: at most 2 describes a minute per job, plus the log tail
    assert 60 / intervals[-1] <= 2
    # adaptive retry mode: client-side rate limiting when SageMaker throttles
    assert backend.sm.meta.config.retries["mode"] == "adaptive"


def test_reuse_time_grows_with_watching(settings):
    backend = SageMakerBackend(settings)
    key = ("training", "j")
    assert backend.describes.ttl(key, 5.0) == 5.0  # never described yet
    now = time.monotonic()
    for watched, expected in [(10, 5.0), (100, 10.0), (250, 25.0), (3600, 30.0)]:
        backend.describes.first_seen[key] = now - watched
        assert backend.describes.ttl(key, 5.0) == pytest.approx(expected, rel=0.01)
    assert backend.describes.ttl(key, 0.0) == 0.0  # 0 switches the cache off


def test_not_found_and_attach(sm, moto_server, settings):
    with pytest.raises(SmRMagicError, match="no SageMaker training job named nope"):
        sm.describe_job("training", "nope")
    with pytest.raises(SmRMagicError, match="no SageMaker job or endpoint named nope"):
        api.attach("nope")
    first = api.train(TRAIN, name="again", wait=False)
    time.sleep(1.1)  # names and creation times have one-second resolution
    second = api.train(TRAIN, name="again", wait=False)
    other = api.processing(PROCESS, name="again-prep", wait=False)
    assert api.attach(first.name).name == first.name
    latest = api.attach("again")
    assert latest.name == other.name and latest.kind == "processing"  # the latest whose name starts with again-
    assert api.attach(second.name).kind == "training"
    names = [j.name for j in sm.list_jobs()]
    assert names == [first.name, second.name, other.name]
    # after a kernel restart the configured backend is local again: %r_attach NAME still finds the job
    settings.backend = "local"
    again = api.attach(first.name)
    assert again.backend_name == "sagemaker" and again.kind == "training"
    with pytest.raises(SmRMagicError, match=r"no local job named nope .*looked in local, docker, sagemaker"):
        api.attach("nope")


# -- stop ----------------------------------------------------------------------------------------------------

def test_stop_training_job_via_stubber(sm, moto_server):
    """moto 5 does not implement StopTrainingJob (HTTP 500): botocore's Stubber checks our request."""
    job = api.train(TRAIN, name="long", wait=False)
    with Stubber(sm.sm) as stub:
        stub.add_response("stop_training_job", {}, {"TrainingJobName": job.name})
        stub.add_response("describe_training_job", {
            "TrainingJobName": job.name, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job.name}",
            "TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped", "CreationTime": utc(5),
            "AlgorithmSpecification": {"TrainingInputMode": "File"}, "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m"},
            "ResourceConfig": {"InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60}}, {"TrainingJobName": job.name})
        job._description = None
        job.stop(wait=True, timeout=5)
        stub.assert_no_pending_responses()
    assert job.status == "Stopped"
    with Stubber(sm.sm) as stub:  # stopping a finished job is not an error
        stub.add_client_error("stop_training_job", "ValidationException", "The job is not in progress")
        assert sm.stop_job("training", job.name) is False


def test_stop_processing_job_on_moto(sm, moto_server):
    job = api.processing(PROCESS, wait=False)
    backend_jobs("processing")[job.name].processing_job_status = "InProgress"
    job.stop(wait=True, timeout=5)
    assert job.status == "Stopped"


# -- logs ----------------------------------------------------------------------------------------------------

def test_log_tail_from_where_it_left_off(sm, moto_server):
    job = api.train(TRAIN, name="chatty", wait=False)
    assert job.poll_logs() == []  # no log group yet: nothing, no error
    logs = moto_server.client("logs")
    group = "/aws/sagemaker/TrainingJobs"
    put_log_events(logs, group, "someone-else/algo-1-1", ["not ours"])
    assert job.poll_logs() == []
    put_log_events(logs, group, f"{job.name}/algo-1-1700000000", ["Loading required package", "iteration 1\n"])
    assert job.poll_logs() == ["Loading required package", "iteration 1"]
    assert job.poll_logs() == []
    put_log_events(logs, group, f"{job.name}/algo-1-1700000000", ["iteration 2", "rmse: 2.94\nR done"])
    assert job.poll_logs() == ["iteration 2", "rmse: 2.94", "R done"]
    assert job.metrics({"rmse": r"rmse: ([0-9.]+)"}) == {"rmse": 2.94}
    assert job.logs().splitlines() == ["Loading required package", "iteration 1", "iteration 2", "rmse: 2.94",
                                       "R done"]
    # a second instance: lines are prefixed with their stream
    put_log_events(logs, group, f"{job.name}/algo-2-1700000000", ["hello from 2"])
    assert job.poll_logs() == ["[algo-2-1700000000] hello from 2"]

    proc = api.processing(PROCESS, name="proc-logs", wait=False)
    put_log_events(logs, "/aws/sagemaker/ProcessingJobs", f"{proc.name}/algo-1-1", ["processing says hi"])
    assert proc.logs() == "processing says hi\n"


def test_log_reads_are_throttled_while_running(sm, moto_server, monkeypatch):
    monkeypatch.setattr(SageMakerBackend, "log_interval", 60.0)
    job = api.train(TRAIN, name="busy", wait=False)
    backend_jobs("training")[job.name].training_job_status = "InProgress"
    put_log_events(moto_server.client("logs"), "/aws/sagemaker/TrainingJobs", f"{job.name}/algo-1-1", ["one"])
    assert job.poll_logs() == ["one"]
    job.describe()
    put_log_events(moto_server.client("logs"), "/aws/sagemaker/TrainingJobs", f"{job.name}/algo-1-1", ["two"])
    calls = sm.api_calls
    assert job.poll_logs() == [] and sm.api_calls == calls  # too soon: no CloudWatch call
    backend_jobs("training")[job.name].training_job_status = "Completed"
    job.describe()
    assert job.poll_logs() == ["two"]  # the job ended: its last lines are read at once


def test_last_lines_written_after_the_job_ended_are_shown(sm, moto_server, monkeypatch, capsys):
    """CloudWatch lags: the traceback of a job that just failed arrives a moment after the job has ended.
    Waiting for the job reads the logs once more `final_log_lag` seconds after its end."""
    monkeypatch.setattr(SageMakerBackend, "final_log_lag", 1.5)
    logs = moto_server.client("logs")
    timers = []

    def fail_now(job):
        job.training_job_status = "Failed"
        job.failure_reason = "AlgorithmError: see the logs"
        job.training_end_time = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        stream = f"{job.training_job_name}/algo-1-1"
        put_log_events(logs, "/aws/sagemaker/TrainingJobs", stream, ["fitting"])
        timers.append(threading.Timer(0.5, put_log_events, (logs, "/aws/sagemaker/TrainingJobs", stream,
                                                        ["Error in fit(): singular matrix"])))
        timers[-1].start()

    on_create(sm, "training", fail_now)
    try:
        with pytest.raises(JobFailed):
            api.train(TRAIN, name="late-lines")
    finally:
        for timer in timers:
            timer.cancel()
    out = capsys.readouterr().out
    assert "fitting" in out and "Error in fit(): singular matrix" in out


# -- endpoints -----------------------------------------------------------------------------------------------

def endpoint_requests(name, model_data, serverless=None):
    model = spec.model_request(model_name=spec.unique_name(name), image=IMAGE, role=ROLE, model_data=model_data)
    config = spec.endpoint_config_request(config_name=model["ModelName"], model_name=model["ModelName"],
                                          serverless=serverless)
    endpoint = spec.endpoint_request(endpoint_name=model["ModelName"], config_name=config["EndpointConfigName"])
    return {"model": model, "endpoint_config": config, "endpoint": endpoint}


def test_deploy_invoke_delete(sm, moto_server, tmp_path):
    import tarfile

    model_tar = tmp_path / "model.tar.gz"
    with tarfile.open(model_tar, "w:gz") as tar:
        (tmp_path / "m.rds").write_bytes(b"fake")
        tar.add(tmp_path / "m.rds", arcname="m.rds")
    staged = sm.model_data_uri(str(model_tar))
    data = staged.uri
    assert data.startswith(f"s3://{BUCKET}/sm-r-magic/models/") and data.endswith("/model.tar.gz")
    assert sm.model_data_uri("s3://b/x/model.tar.gz").uri == "s3://b/x/model.tar.gz"
    with pytest.raises(SmRMagicError):
        sm.model_data_uri(str(tmp_path / "missing.tar.gz"))

    assert data.split(f"{BUCKET}/", 1)[1] not in s3_keys(moto_server)  # naming uploads nothing
    sm.upload(None, [staged])
    predictor = sm.deploy(endpoint_requests("mtcars", data, serverless=(1024, 2)))
    name = predictor.endpoint_name
    assert data.split(f"{BUCKET}/", 1)[1] in s3_keys(moto_server)
    assert predictor.status == "InService" and predictor.backend_name == "sagemaker"

    moto_server.seed_endpoint_results([{"Body": "21.2\n19.9\n", "ContentType": "text/csv"},
                                       {"Body": json.dumps([1.5]), "ContentType": "application/json"}])
    assert predictor.predict({"wt": [2.5, 3.0]}, content_type="text/csv") == [21.2, 19.9]
    assert predictor.predict([{"wt": 2.5}]) == [1.5]

    from sm_r_magic.predictor import InvocationError

    # moto's InvokeEndpoint never fails: the container's error answer (ModelError) comes through a Stubber
    runtime = sm.client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        stub.add_client_error("invoke_endpoint", "ModelError", "Received client error (400) from primary",
                              http_status_code=424,
                              response_meta={"OriginalStatusCode": 400},
                              modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": "bad CSV: no header"})
        with pytest.raises(InvocationError) as info:
            predictor.invoke(b"1,2", "text/csv")
    assert info.value.status == 400 and "no header" in info.value.body

    put_log_events(moto_server.client("logs"), f"/aws/sagemaker/Endpoints/{name}", "AllTraffic/i-0abc",
               ["model loaded", "listening on 8080"])
    assert predictor.logs() == "model loaded\nlistening on 8080\n"

    assert api.attach(name).endpoint_name == name
    assert [p.endpoint_name for p in sm.list_endpoints()] == [name]
    predictor.delete()
    assert predictor.status == "Deleted" and "Deleted" in repr(predictor)  # shown again in a cell: no error
    client = moto_server.client("sagemaker")
    assert client.list_endpoints()["Endpoints"] == []
    assert client.list_endpoint_configs()["EndpointConfigs"] == []
    assert client.list_models()["Models"] == []
    sm.delete_endpoint(name)  # already gone: nothing to do, no error


def test_deploy_rolls_back_when_a_step_fails(sm, moto_server):
    requests = endpoint_requests("rollback", "s3://b/m/model.tar.gz")
    requests["endpoint_config"]["ProductionVariants"][0]["ModelName"] = "no-such-model"  # moto refuses this
    with pytest.raises(Exception):
        sm.deploy(requests)
    assert moto_server.client("sagemaker").list_models()["Models"] == []  # the model was deleted again


def test_training_job_to_endpoint(sm, moto_server):
    """The model of a training job, deployed: the CreateModel request names the job's model.tar.gz."""
    job = api.train(TRAIN, name="to-deploy", wait=True, progress="none")
    requests = endpoint_requests("served", job.model_data)
    sent = capture(sm, "CreateModel")
    predictor = sm.deploy(requests)
    assert sent[0]["PrimaryContainer"]["ModelDataUrl"] == job.model_data
    assert predictor.describe()["EndpointStatus"] == "InService"


# -- checked before anything is uploaded or created ----------------------------------------------------------

def nothing_created(server):
    assert server.client("s3").list_buckets()["Buckets"] == []
    client = server.client("sagemaker")
    assert client.list_training_jobs()["TrainingJobSummaries"] == []
    assert client.list_processing_jobs()["ProcessingJobSummaries"] == []
    assert client.list_models()["Models"] == []


@pytest.mark.parametrize("magic, line, expected", [
    ("r_train", "--instance-type ml.m5.hugex", "--instance-type ml.m5.hugex is not a SageMaker training instance"),
    ("r_train", "--hp formula=" + "y" * 2600, "--hp formula: the JSON-encoded value is 2,602 characters long"),
    ("r_train", "--max-run 2500000", "--max-run 2500000 is above SageMaker's maximum of 2,419,200"),
    ("r_processing", "--output a=s3://b/x --output b=s3://b/x/", "--output a and --output b both go to s3://b/x/"),
    ("r_processing", "--input raw=s3://b/" + "k" * 1030, "--input raw: the value is 1,037 characters long"),
    ("r_train", "--checkpoint-uri s3://b/" + "c" * 1030, "--checkpoint-uri: the value is 1,037 characters long"),
])
def test_limits_are_checked_before_any_upload(shell, moto_server, fast, magic, line, expected):
    configure_shell(shell)
    _, error = run_cell(shell, magic, f"--backend sagemaker {line}", TRAIN if magic == "r_train" else PROCESS)
    assert type(error).__name__ == "UsageError" and "\n" not in str(error), error
    assert expected in str(error)
    nothing_created(moto_server)


def test_listing_without_credentials_is_one_line(shell, moto_server, monkeypatch, capsys):
    configure_shell(shell)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    for line in ("r_jobs --backend sagemaker", "r_endpoints --backend sagemaker"):
        result = shell.run_cell(f"%{line}")
        assert type(result.error_in_exec).__name__ == "UsageError", (line, result.error_in_exec)
        assert str(result.error_in_exec).startswith("no AWS credentials found")
    assert "Traceback" not in capsys.readouterr().out


def test_secrets_in_the_source_dir_never_reach_s3(sm, moto_server, tmp_path, capsys):
    import io
    import tarfile

    folder = tmp_path / "project"
    (folder / ".aws").mkdir(parents=True)
    (folder / ".aws" / "credentials").write_text("[default]\naws_secret_access_key = SECRET\n")
    (folder / ".Renviron").write_text("GITHUB_PAT=SECRET\n")
    (folder / "helpers.R").write_text("h <- 1\n")
    job = api.train(TRAIN, source_dir=str(folder), wait=False)
    code = json.loads(job.describe()["HyperParameters"]["sagemaker_submit_directory"])
    bucket, key = aws.split_s3(code)
    body = moto_server.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert sorted(tar.getnames()) == ["helpers.R", "train.R"]
    assert b"SECRET" not in gzip_open(body)
    assert ".Renviron" in capsys.readouterr().err


def gzip_open(data):
    import gzip

    return gzip.decompress(data)


def test_deploy_without_code_checks_the_jobs_code_in_s3(sm, moto_server, tmp_path):
    """moto writes no model.tar.gz: the check reads the training job's sourcedir.tar.gz from S3 instead."""
    job = api.train(TRAIN, name="plain", wait=True, progress="none")
    with pytest.raises(SmRMagicError, match=f"--model {job.name}: its training code \\(train.R\\) has no deploy.R"):
        api.deploy(model=job, progress="none")
    assert moto_server.client("sagemaker").list_models()["Models"] == []
    deploy_r = tmp_path / "deploy.R"
    deploy_r.write_text("model_fn <- function(model_dir) 1\n")
    seeded = api.train(TRAIN, name="seeded", files=[str(deploy_r)], wait=True, progress="none")
    predictor = api.deploy(model=seeded, wait=False, progress="none")
    assert predictor.backend_name == "sagemaker"
    (model,) = moto_server.client("sagemaker").list_models()["Models"]
    predictor.delete()
