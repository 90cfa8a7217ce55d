"""The export storage on an S3-compatible bucket (EXPORT_STORAGE=s3; apps/exports/storage.py).

A module of its own so that only processes configured for S3 import boto3.
"""

import functools
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from storages.backends.s3 import S3Storage

from apps.exports.storage import StorageUnavailable


class ExportS3Storage(S3Storage):  # type: ignore[misc]  # django-storages ships no types
    """An S3-compatible bucket (AWS S3, MinIO, ...), from django-storages.

    Besides django-storages' options: `public_endpoint_url`, the endpoint that browsers and API
    clients reach when it differs from `endpoint_url`, the one the processes use (in
    docker-compose.yml http://minio:9000 inside, http://localhost:9000 outside): signed links
    are made for it, since the host is part of the signature. `connect_timeout`, `read_timeout`
    and `max_attempts` bound how long a call waits on an S3 that does not answer.
    """

    def get_default_settings(self) -> dict[str, Any]:
        defaults: dict[str, Any] = super().get_default_settings()
        return {
            **defaults,
            "public_endpoint_url": None,
            "connect_timeout": 10,
            "read_timeout": 60,
            "max_attempts": 3,
        }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if options.get("client_config") is None:
            self.client_config = Config(
                s3={"addressing_style": self.addressing_style},
                signature_version=self.signature_version or "s3v4",
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                retries={"max_attempts": self.max_attempts, "mode": "standard"},
            )

    @functools.cached_property
    def _signer(self) -> S3Storage:
        """This storage as seen from outside: the same bucket and keys at the public endpoint
        (signing needs no network)."""
        if not self.public_endpoint_url or self.public_endpoint_url == self.endpoint_url:
            return self
        options = {
            name: getattr(self, name)
            for name in self.get_default_settings()
            if name not in ("client_config", "public_endpoint_url")
        }
        return ExportS3Storage(**{**options, "endpoint_url": self.public_endpoint_url})

    def signed_url(self, name: str, *, expire: int, parameters: dict[str, str]) -> str:
        """A GET link to the object, valid for `expire` seconds; `parameters` are S3's
        response overrides (ResponseContentType, ResponseContentDisposition)."""
        return str(self._signer.url(name, parameters=parameters, expire=expire))

    def check(self) -> None:
        """Raises StorageUnavailable unless the bucket is there and answers."""
        at = f" at {self.endpoint_url}" if self.endpoint_url else ""
        try:
            self.connection.meta.client.head_bucket(Bucket=self.bucket_name)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or code in ("404", "NoSuchBucket"):
                raise StorageUnavailable(
                    f"export storage: the bucket {self.bucket_name!r} does not exist{at}; "
                    "create it, or set EXPORT_S3_BUCKET to one that does"
                ) from exc
            raise StorageUnavailable(
                f"export storage: the bucket {self.bucket_name!r}{at} refused access "
                f"({code or status}): check the credentials and the bucket's policy"
            ) from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"export storage: S3{at} cannot be reached: {exc}") from exc
