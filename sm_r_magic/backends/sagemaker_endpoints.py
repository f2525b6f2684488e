"""Endpoints on SageMaker, for the sagemaker backend: CreateModel, CreateEndpointConfig and CreateEndpoint (undone
when a later one fails), InvokeEndpoint through sagemaker-runtime, deletion of all three, and their CloudWatch
logs. Answers as the folder backends' endpoints do (folder_endpoints.py)."""

from .. import aws
from .sagemaker_jobs import LIST_LIMIT
from .sagemaker_part import SageMakerPart


class SageMakerEndpoints(SageMakerPart):
    def predictor(self, name):
        from ..predictor import Predictor

        return Predictor(self.backend, name)

    def deploy(self, requests, keep=False):
        """CreateModel, CreateEndpointConfig, CreateEndpoint; returns a Predictor at once (Creating).

        A local model.tar.gz named by model_data_uri() must have been uploaded (upload()). If a later step
        fails, what was created is deleted again. `keep` has no effect: SageMaker endpoints live until deleted."""
        model, config, endpoint = requests["model"], requests["endpoint_config"], requests["endpoint"]
        created = []
        call = self.backend.call
        try:
            call("create the model", self.sm.create_model, **model)
            created.append(("model", model["ModelName"]))
            call("create the endpoint config", self.sm.create_endpoint_config, **config)
            created.append(("config", config["EndpointConfigName"]))
            call("create the endpoint", self.sm.create_endpoint, **endpoint)
        except Exception:
            for what, name in reversed(created):
                try:
                    if what == "config":
                        self.sm.delete_endpoint_config(EndpointConfigName=name)
                    else:
                        self.sm.delete_model(ModelName=name)
                except Exception:
                    pass
            raise
        return self.predictor(endpoint["EndpointName"])

    def describe(self, name):
        return self.described(("endpoint", name), lambda: self.sm.describe_endpoint(EndpointName=name),
                              lambda: f"no SageMaker endpoint named {name} in {self.backend.session.region}")

    def invoke(self, name, body, content_type, accept):
        from botocore.exceptions import ClientError

        from ..predictor import InvocationError

        if isinstance(body, str):
            body = body.encode("utf-8")
        args = {"EndpointName": name, "Body": body, "ContentType": content_type}
        if accept:
            args["Accept"] = accept
        try:
            response = self.backend.client("sagemaker-runtime").invoke_endpoint(**args)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            if aws.error_code(exc) == "ModelError":  # the container answered an error: its status and body
                status = exc.response.get("OriginalStatusCode") or err.get("OriginalStatusCode") or 500
                message = exc.response.get("OriginalMessage") or err.get("OriginalMessage") or err.get("Message", "")
                raise InvocationError(int(status), message) from None
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500
            raise InvocationError(int(status), f"{aws.error_code(exc)}: {err.get('Message', str(exc))}") from None
        return response["Body"].read(), response.get("ContentType")

    def example(self, name, content_type):
        return None  # SageMaker routes only /ping and /invocations to a container

    def read_logs(self, name, cursor=None):
        return self.backend.log_tail.endpoint_lines(name, cursor)

    def delete(self, name):
        """Delete the endpoint, then its endpoint config and model(s); parts already gone are skipped."""
        from botocore.exceptions import ClientError

        config_name, models = None, []
        try:
            config_name = self.sm.describe_endpoint(EndpointName=name)["EndpointConfigName"]
        except ClientError as exc:
            if not aws.is_not_found(exc):
                raise
        if config_name:
            try:
                config = self.sm.describe_endpoint_config(EndpointConfigName=config_name)
                models = [v["ModelName"] for v in config.get("ProductionVariants", []) if v.get("ModelName")]
            except ClientError as exc:
                if not aws.is_not_found(exc):
                    raise
        steps = [(self.sm.delete_endpoint, {"EndpointName": name})]
        if config_name:
            steps.append((self.sm.delete_endpoint_config, {"EndpointConfigName": config_name}))
        steps += [(self.sm.delete_model, {"ModelName": model}) for model in models]
        for func, args in steps:
            try:
                func(**args)
            except ClientError as exc:
                if not aws.is_not_found(exc):
                    raise
        self.backend.forget("endpoint", name)
        return True

    def model_request(self, name):
        """The CreateModel request of an endpoint's model, from DescribeEndpoint, DescribeEndpointConfig and
        DescribeModel (its PrimaryContainer names the inference code the endpoint serves)."""
        call = self.backend.call
        config_name = self.describe(name)["EndpointConfigName"]
        config = call(f"describe the endpoint config of {name}", self.sm.describe_endpoint_config,
                      EndpointConfigName=config_name)
        model_name = config["ProductionVariants"][0]["ModelName"]
        model = call(f"describe the model of {name}", self.sm.describe_model, ModelName=model_name)
        request = {"ModelName": model_name,
                   "PrimaryContainer": model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]}
        if model.get("ExecutionRoleArn"):
            request["ExecutionRoleArn"] = model["ExecutionRoleArn"]
        return request

    def list(self):
        response = self.backend.call("list endpoints", self.sm.list_endpoints, SortBy="CreationTime",
                                     SortOrder="Descending", MaxResults=LIST_LIMIT)
        return [self.predictor(e["EndpointName"]) for e in reversed(response.get("Endpoints", []))]

    def latest_of_base(self, name):
        """(CreationTime, Predictor) of each endpoint named `name-...` among the newest 50 (none when unlisted)."""
        from botocore.exceptions import ClientError

        try:
            endpoints = self.sm.list_endpoints(SortBy="CreationTime", SortOrder="Descending", NameContains=name,
                                               MaxResults=50).get("Endpoints", [])
        except ClientError:
            endpoints = []
        return [(e["CreationTime"], self.predictor(e["EndpointName"])) for e in endpoints
                if e["EndpointName"].startswith(name + "-")]
