"""Where background exports' files live: the "exports" storage of settings.STORAGES.

By default a local folder, EXPORT_ROOT (`ExportFolderStorage`), which every process that
writes, serves or deletes export files must share. With EXPORT_STORAGE=s3 an S3-compatible
bucket (`apps.exports.s3.ExportS3Storage`, django-storages), so that web, worker and beat may
run on different hosts; EXPORT_ROOT is then each worker's scratch folder for the file it writes.

Everything goes through Django's storage API (save, open, delete, exists, url); only the
check that the bucket is there (`storage_check`) and the signed link's public host are S3's own.
"""

import logging
import os
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

from annotate.errors import ServiceUnavailable

logger = logging.getLogger(__name__)


class StorageUnavailable(ServiceUnavailable):
    """The export storage cannot be used (bucket missing, S3 unreachable, refused): the message
    says which, for the job's `error` or a 503."""


class ExportFolderStorage(FileSystemStorage):
    """The local folder: EXPORT_ROOT, read when used (so a changed setting takes effect), and
    a file saved under an existing name replaces it (a job's file names are its own)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_overwrite", True)
        super().__init__(**kwargs)

    @property
    def base_location(self) -> Any:
        return self._value_or_setting(getattr(self, "_location", None), settings.EXPORT_ROOT)

    @property
    def location(self) -> str:
        location: str = os.path.abspath(self.base_location)
        return location


def export_storage() -> Storage:
    return storages["exports"]


def signs_urls(storage: Storage) -> bool:
    """Whether downloads are redirects to a signed link (S3) rather than streamed (a folder)."""
    return callable(getattr(storage, "signed_url", None))


def storage_check(storage: Storage) -> None:
    """Raises StorageUnavailable when the storage cannot take files now: the folder cannot be
    made, or the bucket is missing or unreachable."""
    check = getattr(storage, "check", None)
    if callable(check):
        check()
    elif isinstance(storage, FileSystemStorage):
        try:
            os.makedirs(storage.location, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(
                f"export storage: the folder {storage.location} cannot be made: {exc}"
            ) from exc


def storage_error(exc: BaseException) -> StorageUnavailable | None:
    """The storage failure an exception from a storage call stands for, if it is one (S3's
    errors, or the folder's OSError), with a message naming the storage."""
    if isinstance(exc, StorageUnavailable):
        return exc
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        return StorageUnavailable(f"export storage: S3 refused the request ({code}): {exc}")
    if isinstance(exc, BotoCoreError):
        return StorageUnavailable(f"export storage: S3 cannot be reached: {exc}")
    return None


class StagedFile(File[bytes]):
    """A finished local file handed to the storage: a folder storage moves it into place (one
    rename when on the same filesystem), S3 uploads it (in parts when large, so memory stays
    bounded) with its content type."""

    def __init__(self, path: Any, content_type: str) -> None:
        super().__init__(open(path, "rb"), name=str(path))  # noqa: SIM115 - closed by save()
        self.content_type = content_type
        self._path = str(path)

    def temporary_file_path(self) -> str:
        return self._path


def storage_save(storage: Storage, name: str, path: Any, content_type: str) -> str:
    """Saves the local file at `path` as `name`; returns the name stored. The local file is
    moved (folder) or left for the caller to remove (S3)."""
    staged = StagedFile(path, content_type)
    try:
        return str(storage.save(name, staged))
    finally:
        staged.close()
