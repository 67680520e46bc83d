"""Parallel, resumable, checksum-verified uploads to S3 (or any S3-compatible store).

- Resumable: one listing of the prefix gives every object's ETag; a local file
  whose ETag (its MD5, or the multipart form ``md5(part md5s)-N`` for our fixed
  part size) is already there is not sent again.
- Verified: every request carries ``Content-MD5`` (each part of a multipart
  upload too), so the store rejects a body that arrived damaged; the ETag it
  answers is checked against ours.
- Robust: botocore's standard retry mode backs off on throttling, 5xx and
  connection errors; a store that stays away ends the upload with a retryable
  StorageError instead of failing object after object.
- Exact: the same listing tells which objects no longer belong; ``delete``
  removes them in batches of 1000 (DeleteObjects).
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import boto3
import botocore.session
from botocore import handlers
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from config import S3Config
from exceptions import StorageError

CREDENTIAL_ERRORS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                     "InvalidToken", "ExpiredToken", "403"}
MISSING_BUCKET_ERRORS = {"NoSuchBucket", "404"}
HASH_CHUNK = 1 << 20
DELETE_BATCH = 1000  # keys per DeleteObjects request (the S3 maximum)


@dataclass(frozen=True)
class UploadItem:
    path: Path
    key: str
    etag: str  # what the store's ETag will be once it holds this file


@dataclass
class UploadStats:
    sent: int = 0  # objects uploaded
    skipped: int = 0  # already in the store with the same checksum
    bytes_sent: int = 0
    requests: int = 0  # PUT requests made, retries included
    deleted: int = 0  # objects removed: no longer part of the version (set by the build)


def file_etag(path: Path, part_size: int) -> str:
    """The S3 ETag of ``path`` uploaded with our part size (hex, no quotes)."""
    parts: list[bytes] = []
    with open(path, "rb") as handle:
        while True:
            md5, size = hashlib.md5(), 0
            while size < part_size:
                chunk = handle.read(min(HASH_CHUNK, part_size - size))
                if not chunk:
                    break
                md5.update(chunk)
                size += len(chunk)
            if size == 0 and parts:  # the file ended on a part boundary
                break
            parts.append(md5.digest())
            if size < part_size:
                break
    if len(parts) == 1:
        return parts[0].hex()
    return f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"


class ChecksumCache:
    """ETags of the files under ``root`` keyed by (size, mtime, inode): a re-run
    hashes nothing new. Saved in ``root/.checksums.json`` for one part size."""

    def __init__(self, root: Path, part_size: int) -> None:
        self.root, self.part_size = root, part_size
        self.file = root / ".checksums.json"
        try:
            saved = json.loads(self.file.read_text())
        except (OSError, ValueError):
            saved = {}
        # name -> [size, mtime_ns, inode, etag]
        self.files: dict[str, list] = \
            saved.get("files", {}) if saved.get("part_size") == part_size else {}
        self.checked: set[str] = set()  # stat()ed in this build: asked again, no stat

    def etag(self, name: str) -> str:
        if name in self.checked:
            return self.files[name][3]
        self.checked.add(name)
        stat = os.stat(os.path.join(self.root, name))
        key = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        entry = self.files.get(name)
        if entry and entry[:3] == key:
            return entry[3]
        etag = file_etag(self.root / name, self.part_size)
        self.files[name] = key + [etag]
        return etag

    def size(self, name: str) -> int:
        self.etag(name)
        return self.files[name][0]

    def save(self) -> None:
        tmp = self.file.with_name(".checksums.json.tmp")
        tmp.write_text(json.dumps({"part_size": self.part_size, "files": self.files}))
        tmp.replace(self.file)


def _fast_session() -> botocore.session.Session:
    """A botocore session that leaves timestamps as text: parsing each listed
    object's LastModified with dateutil was half the time of listing a
    20,000-object prefix (measured), and nothing here reads it."""
    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=str)
    return session


class S3Store:
    def __init__(self, config: S3Config) -> None:
        self.bucket = config.bucket
        self.threads = config.upload_threads
        self.part_size = config.part_mb << 20
        self.stats = UploadStats()
        self.remote: dict[str, str] = {}  # key -> ETag of what the store holds
        self._listing: Future | None = None
        self._lock = threading.Lock()
        self.client = boto3.session.Session(botocore_session=_fast_session()).client(
            "s3", endpoint_url=config.endpoint_url or None, region_name=config.region or None,
            config=BotoConfig(
                retries={"max_attempts": config.max_attempts, "mode": "standard"},
                max_pool_connections=self.threads + 2,
                connect_timeout=config.connect_timeout_seconds,
                read_timeout=config.read_timeout_seconds,
                # We send Content-MD5 ourselves; no second checksum pass over each body.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path" if config.endpoint_url else "auto"}))
        # No "Expect: 100-continue": SeaweedFS answers it late when a PUT replaces
        # an empty object (measured: each such PUT waits out the read timeout),
        # and for objects this small the saved round trip is worth more anyway.
        self.client.meta.events.unregister("before-call.s3", handlers.add_expect_header)
        self.client.meta.events.register("before-send.s3.PutObject", self._count_request)
        self.client.meta.events.register("before-send.s3.UploadPart", self._count_request)

    def _count_request(self, **_) -> None:
        with self._lock:
            self.stats.requests += 1

    def check(self) -> None:
        """Fail early, with a clear message, when the bucket cannot be used."""
        with storage_errors(f"bucket {self.bucket!r}"):
            self.client.head_bucket(Bucket=self.bucket)

    def start_listing(self, prefix: str) -> None:
        """List what the store holds under ``prefix`` (the resume point) in a
        background thread, overlapping the export; ``upload`` waits for it."""
        lister = ThreadPoolExecutor(1, thread_name_prefix="s3-list")
        self._listing = lister.submit(self._list, prefix)
        lister.shutdown(wait=False)  # the thread ends with its one listing

    def _list(self, prefix: str) -> dict[str, str]:
        etags = {}
        with storage_errors(f"listing s3://{self.bucket}/{prefix}/"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{prefix}/")
            for page in pages:
                for obj in page.get("Contents", []):
                    etags[obj["Key"]] = obj["ETag"].strip('"')
        return etags

    def listed(self) -> dict[str, str]:
        """What the store holds under the prefix (key -> ETag): the listing,
        kept current with what this store sent and deleted since."""
        if self._listing is not None:
            self.remote, self._listing = self._listing.result(), None
        return self.remote

    def delete(self, keys: list[str]) -> None:
        """Remove ``keys``, in batches; a key already gone counts as removed."""
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]
            with storage_errors(f"deleting {len(batch)} object(s) under {batch[0]}"):
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": key} for key in batch], "Quiet": True})
            if answer.get("Errors"):  # per key, with a 200 for the request
                error = answer["Errors"][0]
                denied = error.get("Code") in CREDENTIAL_ERRORS
                raise StorageError(f"deleting {error.get('Key')} (and {len(answer['Errors']) - 1} "
                                   f"more): {error.get('Code')} {error.get('Message', '')}",
                                   code="storage_credentials" if denied else "storage_error",
                                   retryable=not denied)
            for key in batch:
                self.remote.pop(key, None)

    def upload(self, items: Iterable[UploadItem], on_done: Callable[[UploadItem], None],
               on_sending: Callable[[], None] = lambda: None) -> None:
        """Send every item the store does not hold yet; ``on_done`` after each
        (sent or skipped), in this thread; ``on_sending`` from the sending
        threads, for each block of a body sent. Raises StorageError on the
        first failure that retries did not cure, after the requests in flight end."""
        self.listed()
        in_flight: dict[Future, UploadItem] = {}
        with ThreadPoolExecutor(self.threads, thread_name_prefix="s3") as pool:
            try:
                for item in items:
                    if self.remote.get(item.key) == item.etag:
                        self.stats.skipped += 1
                        on_done(item)
                        continue
                    while len(in_flight) >= 2 * self.threads:  # bounded: no 10k futures
                        self._collect(in_flight, on_done, FIRST_COMPLETED)
                    in_flight[pool.submit(self._put, item, on_sending)] = item
                while in_flight:
                    self._collect(in_flight, on_done, FIRST_COMPLETED)
            finally:
                for future in in_flight:
                    future.cancel()

    @staticmethod
    def _collect(in_flight: dict[Future, UploadItem], on_done: Callable, when: str) -> None:
        done, _ = wait(list(in_flight), return_when=when)
        for future in done:
            item = in_flight.pop(future)
            future.result()  # re-raises the worker's StorageError here
            on_done(item)

    def _put(self, item: UploadItem, on_sending: Callable[[], None]) -> None:
        size = item.path.stat().st_size
        with storage_errors(f"uploading {item.key}"):
            if size > self.part_size:
                etag = self._put_multipart(item, on_sending)
            else:
                body = item.path.read_bytes()
                md5 = hashlib.md5(body).digest()
                etag = self.client.put_object(
                    Bucket=self.bucket, Key=item.key, Body=_SentBody(body, on_sending),
                    ContentMD5=base64.b64encode(md5).decode())["ETag"].strip('"')
        if etag != item.etag:  # the file changed under us, or the store differs
            raise StorageError(f"{item.key}: the store holds checksum {etag}, expected "
                               f"{item.etag}", code="checksum_mismatch", retryable=True)
        with self._lock:
            self.remote[item.key] = etag
            self.stats.sent += 1
            self.stats.bytes_sent += size

    def _put_multipart(self, item: UploadItem, on_sending: Callable[[], None]) -> str:
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket,
                                                        Key=item.key)["UploadId"]
        try:
            parts = []
            with open(item.path, "rb") as handle:
                while chunk := handle.read(self.part_size):
                    md5 = base64.b64encode(hashlib.md5(chunk).digest()).decode()
                    answer = self.client.upload_part(
                        Bucket=self.bucket, Key=item.key, UploadId=upload_id,
                        Body=_SentBody(chunk, on_sending),
                        PartNumber=len(parts) + 1, ContentMD5=md5)
                    parts.append({"PartNumber": len(parts) + 1, "ETag": answer["ETag"]})
            return self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=item.key, UploadId=upload_id,
                MultipartUpload={"Parts": parts})["ETag"].strip('"')
        except BaseException:
            # Nothing half-uploaded stays billed or visible: the parts are dropped.
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=item.key,
                                                   UploadId=upload_id)
            except (BotoCoreError, ClientError):
                pass
            raise


class _SentBody(io.BytesIO):
    """A request body that reports each block the HTTP client reads to send:
    a job sending one large object or part, however slow the link, shows it
    is alive (jobs/watchdog.py) all the while."""

    def __init__(self, data: bytes, on_read: Callable[[], None]) -> None:
        super().__init__(data)
        self.on_read = on_read

    def read(self, size: int | None = -1) -> bytes:
        self.on_read()
        return super().read(size)


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Boto errors as StorageError: which store problem, and whether a later
    retry can cure it."""
    try:
        yield
    except NoCredentialsError as exc:
        raise StorageError(f"{what}: no S3 credentials (set AWS_ACCESS_KEY_ID and "
                           f"AWS_SECRET_ACCESS_KEY)", code="storage_credentials") from exc
    except ClientError as exc:
        raise _client_error(what, exc) from exc
    except BotoCoreError as exc:  # connection refused, timeouts, ...
        raise StorageError(f"{what}: the object store is unreachable: {exc}",
                           code="storage_unavailable", retryable=True) from exc


def _client_error(what: str, exc: ClientError) -> StorageError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in CREDENTIAL_ERRORS:
        return StorageError(f"{what}: the store rejected the credentials ({code})",
                            code="storage_credentials")
    if code in MISSING_BUCKET_ERRORS:
        return StorageError(f"{what}: the bucket does not exist", code="no_such_bucket")
    return StorageError(f"{what}: {code or status}: {exc}", code="storage_error",
                        retryable=status >= 500 or code in ("SlowDown", "Throttling"))
