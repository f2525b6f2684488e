"""What every part of the sagemaker backend (jobs, endpoints, pipelines, registry) shares: the backend it belongs
to, its SageMaker client, and a Describe* through the backend's describe cache whose not-found answer is one
line."""

from .. import aws
from ..errors import SmRMagicError


class SageMakerPart:
    def __init__(self, backend):
        self.backend = backend

    @property
    def sm(self):
        return self.backend.sm

    def described(self, key, describe, missing):
        """describe() through the describe cache under `key`; SmRMagicError(missing()) when SageMaker has no such
        resource. Other ClientErrors are raised as they are."""
        from botocore.exceptions import ClientError

        try:
            return self.backend.describes.get(key, describe)
        except ClientError as exc:
            if aws.is_not_found(exc):
                raise SmRMagicError(missing()) from None
            raise
