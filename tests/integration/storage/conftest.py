"""A moto S3 server (the real HTTP S3 API) on loopback for the session; a bucket per test."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from streamproc.settings import S3Settings

ACCESS_KEY = "streamproc-test-key"
SECRET_KEY = "streamproc-test-secret-do-not-print"


class MotoS3:
    """moto's S3 server on a fixed loopback port; a test may stop and start it again.

    moto keeps buckets and objects in this process's memory, so they survive a restart of
    the server (a real MinIO without a volume would lose them: tests delete the bucket to
    play that).
    """

    def __init__(self) -> None:
        self.port = 0  # the first start picks a free port; restarts reuse it
        self._server: ThreadedMotoServer | None = None
        self.start()
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 3}),
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server (no-op when it runs)."""
        if self._server is not None:
            return
        server = ThreadedMotoServer("127.0.0.1", self.port, verbose=False)
        # ThreadedMotoServer.start waits forever if the port cannot be bound: bound the wait.
        starter = threading.Thread(target=server.start, daemon=True)
        starter.start()
        starter.join(20)
        if starter.is_alive():
            raise RuntimeError(f"moto did not start on port {self.port}")
        self.port = server.get_host_and_port()[1]
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def settings(self, bucket: str, **overrides: Any) -> dict[str, Any]:
        """``storage.s3`` settings for ``bucket`` on this server."""
        return {
            "bucket": bucket,
            "endpoint_url": self.endpoint,
            "region": "us-east-1",
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "path_style": True,
            "max_attempts": 2,
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.05,
            **overrides,
        }

    def s3_settings(self, bucket: str, **overrides: Any) -> S3Settings:
        return S3Settings(**self.settings(bucket, **overrides))

    def create_bucket(self, name: str, *, versioned: bool = False) -> None:
        self.client.create_bucket(Bucket=name)
        if versioned:
            self.client.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": "Enabled"}
            )

    def delete_bucket(self, name: str) -> None:
        """Delete ``name`` with everything in it (every version); no error if it is gone."""
        try:
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=name)
            for page in pages:
                for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    self.client.delete_object(
                        Bucket=name, Key=item["Key"], VersionId=item["VersionId"]
                    )
            self.client.delete_bucket(Bucket=name)
        except self.client.exceptions.NoSuchBucket:
            pass

    def iam_user(self, *, deny: tuple[str, ...] = ()) -> tuple[str, str]:
        """Access key id and secret of a new IAM user that may do anything in S3 except the
        ``deny`` actions (``s3:PutObject``); they matter only inside :meth:`enforcing_iam`."""
        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        name = f"worker-{uuid.uuid4().hex[:10]}"
        statements: list[dict[str, Any]] = [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]
        if deny:
            statements.append({"Effect": "Deny", "Action": list(deny), "Resource": "*"})
        iam.create_user(UserName=name)
        iam.put_user_policy(
            UserName=name,
            PolicyName="streamproc-test",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextlib.contextmanager
    def enforcing_iam(self) -> Iterator[None]:
        """Inside the block moto checks the signature and the IAM policies of every request,
        as S3 does (moto's ``INITIAL_NO_AUTH_ACTION_COUNT``, set through its
        ``/moto-api/reset-auth`` endpoint); outside it accepts any credentials. The test's own
        key is no IAM user: use :attr:`client` only outside the block."""
        self._reset_auth("0")
        try:
            yield
        finally:
            self._reset_auth("inf")

    def _reset_auth(self, count: str) -> None:
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=count.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def read(self, bucket: str, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """The session's moto S3 server."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture
def bucket(moto_s3: MotoS3) -> Iterator[str]:
    """A new, empty bucket, versioned so tests can count the uploads of a key."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    moto_s3.create_bucket(name, versioned=True)
    yield name
    moto_s3.delete_bucket(name)  # moto keeps objects in this process's memory
