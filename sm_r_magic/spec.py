"""Pure builders of the exact SageMaker API requests (CreateProcessingJob, CreateTrainingJob, CreateModel,
CreateEndpointConfig, CreateEndpoint). The sagemaker backend sends them; the local and docker backends
execute the same dicts. Nothing here does I/O."""

import hashlib
import json
import re
import secrets
import time

from ._version import __version__

from .contract import (CHECKPOINT_DIR, CODE_INPUT, CONTAINER_DIR, ENTRYPOINT, ENV_PROGRAM,  # noqa: F401
                       ENV_SUBMIT_DIRECTORY, HP_PROGRAM, HP_SUBMIT_DIRECTORY, INFERENCE_PROGRAM, PROCESS_PROGRAM,
                       PROCESSING_ROOT, SOURCEDIR_NAME, TRAIN_PROGRAM)


_issued_names = set()


def unique_name(base, salt="", now=None):
    """base-YYYYmmdd-HHMMSS-xxxx: valid for SageMaker, sortable, unique per submission.

    xxxx is a short hash of the salt (e.g. the sourcedir sha256) and a random nonce; names issued by this
    process never repeat (four hex digits alone collide often among many submissions in one second)."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    while True:
        digest = hashlib.sha256(f"{base}{salt}{secrets.token_hex(8)}".encode()).hexdigest()[:4]
        name = f"{base}-{stamp}-{digest}"
        if name not in _issued_names:
            _issued_names.add(name)
            return name


_UNIQUE_SUFFIX = re.compile(r"-\d{8}-\d{6}-[0-9a-f]{4}$")


def base_name(unique):
    """The --name a unique job or endpoint name was made from (the name itself if it was not made by us)."""
    return _UNIQUE_SUFFIX.sub("", unique) or unique


# The members of CreateTrainingJob / CreateProcessingJob that a Describe* answer repeats: what is left of a
# description when only these are kept is the request that created the job.
REQUEST_KEYS = {
    "training": ("TrainingJobName", "HyperParameters", "AlgorithmSpecification", "RoleArn", "InputDataConfig",
                 "OutputDataConfig", "ResourceConfig", "VpcConfig", "StoppingCondition", "Tags",
                 "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining",
                 "CheckpointConfig", "DebugHookConfig", "DebugRuleConfigurations", "TensorBoardOutputConfig",
                 "ExperimentConfig", "ProfilerConfig", "ProfilerRuleConfigurations", "Environment", "RetryStrategy",
                 "RemoteDebugConfig", "InfraCheckConfig", "SessionChainingConfig"),
    "processing": ("ProcessingInputs", "ProcessingOutputConfig", "ProcessingJobName", "ProcessingResources",
                   "StoppingCondition", "AppSpecification", "Environment", "NetworkConfig", "RoleArn", "Tags",
                   "ExperimentConfig"),
}


def request_from_description(kind, description):
    """The Create* request of a job, from its Describe* answer (local backends answer with the request itself
    plus state; SageMaker repeats the request's members)."""
    return {key: description[key] for key in REQUEST_KEYS[kind] if key in description}


def tags(sourcedir_sha256, kind):
    return [
        {"Key": "sm-r-magic:version", "Value": __version__},
        {"Key": "sm-r-magic:sourcedir-sha256", "Value": sourcedir_sha256},
        {"Key": "sm-r-magic:kind", "Value": kind},
    ]


def encode_hyperparameters(hyperparameters):
    """JSON-encode every value, as the SageMaker Python SDK does since 2.110 (the container decodes)."""
    return {str(k): json.dumps(v) for k, v in hyperparameters.items()}


def _resources(instance_type, instance_count, volume_size):
    return {"InstanceType": instance_type, "InstanceCount": int(instance_count), "VolumeSizeInGB": int(volume_size)}


def training_request(*, job_name, image, code_uri, channels, hyperparameters, output_path, role=None,
                     instance_type="ml.m5.large", instance_count=1, volume_size=30, max_runtime=86400,
                     environment=None, sourcedir_sha256="", program=TRAIN_PROGRAM, spot=False,
                     max_wait=None, checkpoint_uri=None, metric_definitions=None, keep_alive=None):
    hps = encode_hyperparameters(hyperparameters)
    hps[HP_PROGRAM] = json.dumps(program)
    hps[HP_SUBMIT_DIRECTORY] = json.dumps(code_uri)
    algorithm = {"TrainingImage": image, "TrainingInputMode": "File"}
    if metric_definitions:
        algorithm["MetricDefinitions"] = [{"Name": n, "Regex": r} for n, r in metric_definitions.items()]
    request = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": algorithm,
        "HyperParameters": hps,
        "InputDataConfig": [
            {
                "ChannelName": name,
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                                "S3DataDistributionType": "FullyReplicated"}},
                "InputMode": "File",
            }
            for name, uri in channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": output_path},
        "ResourceConfig": _resources(instance_type, instance_count, volume_size),
        "StoppingCondition": {"MaxRuntimeInSeconds": int(max_runtime)},
        "Environment": dict(environment or {}),
        "Tags": tags(sourcedir_sha256, "training"),
    }
    if not request["InputDataConfig"]:
        del request["InputDataConfig"]
    if role:
        request["RoleArn"] = role
    if spot:
        request["EnableManagedSpotTraining"] = True
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = int(max_wait or max_runtime)
    if keep_alive:  # a SageMaker warm pool: the instance waits this long for the next matching job
        request["ResourceConfig"]["KeepAlivePeriodInSeconds"] = int(keep_alive)
    if checkpoint_uri:  # synced both ways with sm_checkpoint_dir(); with spot, a restarted job resumes from it
        request["CheckpointConfig"] = {"S3Uri": checkpoint_uri, "LocalPath": CHECKPOINT_DIR}
    return request


def processing_request(*, job_name, image, code_uri, inputs, outputs, role=None, instance_type="ml.m5.large",
                       instance_count=1, volume_size=30, max_runtime=86400, environment=None,
                       sourcedir_sha256="", program=PROCESS_PROGRAM):
    code_local = f"{PROCESSING_ROOT}/input/{CODE_INPUT}"
    environment = dict(environment or {})
    environment[ENV_PROGRAM] = program
    environment[ENV_SUBMIT_DIRECTORY] = f"{code_local}/{SOURCEDIR_NAME}"

    def s3_input(name, uri):
        return {"InputName": name, "AppManaged": False,
                "S3Input": {"S3Uri": uri, "LocalPath": f"{PROCESSING_ROOT}/input/{name}", "S3DataType": "S3Prefix",
                            "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
                            "S3CompressionType": "None"}}

    request = {
        "ProcessingJobName": job_name,
        "ProcessingResources": {"ClusterConfig": _resources(instance_type, instance_count, volume_size)},
        "StoppingCondition": {"MaxRuntimeInSeconds": int(max_runtime)},
        "AppSpecification": {"ImageUri": image, "ContainerEntrypoint": [ENTRYPOINT, "process"]},
        "Environment": environment,
        "ProcessingInputs": [s3_input(name, uri) for name, uri in inputs.items()] + [s3_input(CODE_INPUT, code_uri)],
        "Tags": tags(sourcedir_sha256, "processing"),
    }
    if outputs:
        request["ProcessingOutputConfig"] = {"Outputs": [
            {"OutputName": name, "AppManaged": False,
             "S3Output": {"S3Uri": uri, "LocalPath": f"{PROCESSING_ROOT}/output/{name}", "S3UploadMode": "EndOfJob"}}
            for name, uri in outputs.items()
        ]}
    if role:
        request["RoleArn"] = role
    return request


def model_request(*, model_name, image, model_data, role=None, code_uri=None, program=INFERENCE_PROGRAM,
                  environment=None, sourcedir_sha256=""):
    environment = dict(environment or {})
    if code_uri:
        environment[ENV_SUBMIT_DIRECTORY] = code_uri
        environment[ENV_PROGRAM] = program
    container = {"Image": image, "Environment": environment}
    if model_data:
        container["ModelDataUrl"] = model_data
    request = {"ModelName": model_name, "PrimaryContainer": container, "Tags": tags(sourcedir_sha256, "model")}
    if role:
        request["ExecutionRoleArn"] = role
    return request


def endpoint_config_request(*, config_name, model_name, instance_type="ml.m5.large", instance_count=1,
                            serverless=None, sourcedir_sha256=""):
    variant = {"VariantName": "AllTraffic", "ModelName": model_name}
    if serverless:
        memory, concurrency = serverless
        variant["ServerlessConfig"] = {"MemorySizeInMB": int(memory), "MaxConcurrency": int(concurrency)}
    else:
        variant.update({"InstanceType": instance_type, "InitialInstanceCount": int(instance_count),
                        "InitialVariantWeight": 1.0})
    return {"EndpointConfigName": config_name, "ProductionVariants": [variant],
            "Tags": tags(sourcedir_sha256, "endpoint-config")}


def endpoint_request(*, endpoint_name, config_name, sourcedir_sha256=""):
    return {"EndpointName": endpoint_name, "EndpointConfigName": config_name,
            "Tags": tags(sourcedir_sha256, "endpoint")}
