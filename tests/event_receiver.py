"""The event tests' receiver (``tests/webhook_receiver.py`` in its own process)
and the checks every delivery must pass."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, wait_for
from standardwebhooks.webhooks import Webhook

from embedded_db import free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwJ5QqrSbRkTs="


def events_env(url: str, **overrides: str) -> dict[str, str]:
    """Events to ``url``, with quick retries (a test's receiver comes back soon)."""
    return {"EVENTS_URL": url, "EVENTS_SECRET": SECRET, "EVENTS_TIMEOUT_SECONDS": "0.5",
            "EVENTS_BACKOFF_SECONDS": "0.05", "EVENTS_MAX_BACKOFF_SECONDS": "0.5",
            "EVENTS_MAX_ATTEMPTS": "100", **overrides}


class Receiver:
    """A receiver process on a loopback port, answering 500 to ``fail_rate`` of
    the calls and holding ``slow_rate`` of them past the sender's timeout."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder, self.port = folder, port or free_port()
        self.log = folder / f"calls-{self.port}.jsonl"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self, fail_rate: float = 0.0, slow_rate: float = 0.0, seed: int = 1) -> "Receiver":
        ready = self.folder / f"ready-{self.port}-{time.monotonic_ns()}.txt"
        self.process = subprocess.Popen([
            sys.executable, str(ROOT / "tests" / "webhook_receiver.py"), "--port",
            str(self.port), "--log", str(self.log), "--ready", str(ready), "--fail-rate",
            str(fail_rate), "--slow-rate", str(slow_rate), "--slow-seconds", "1",
            "--seed", str(seed)])
        wait_for(ready.exists, 30, "the receiver to listen")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


def wait_delivered(mongo, timeout: float = 120) -> list[dict]:
    """Every recorded event delivered; returns them."""
    def done() -> list[dict] | None:
        events = list(mongo.collections.outbox.find())
        return events if events and all(e["state"] == "delivered" for e in events) else None
    return wait_for(done, timeout, "every event to be delivered")


def check_deliveries(calls: list[dict], recorded: list[dict]) -> dict[str, list[dict]]:
    """The promises of delivery, checked on what the receiver saw: every event
    at least once, every signature valid, duplicates with one webhook-id and
    one body, and per stream the distinct events in sequence order with no
    gap. Returns each stream's distinct events, in the order they arrived."""
    webhook = Webhook(SECRET)
    first: dict[str, dict] = {}
    for call in calls:
        body = webhook.verify(call["body"], call["headers"])  # raises if it does not verify
        event_id = call["headers"]["webhook-id"]
        if event_id in first:
            assert first[event_id]["body"] == body, "a duplicate differs from the original"
        else:
            first[event_id] = {"body": body, "at": call["at"]}
    assert {e["_id"] for e in recorded} <= set(first), "an event never arrived"
    streams: dict[str, list[dict]] = {}
    for event_id, seen in sorted(first.items(), key=lambda item: item[1]["at"]):
        stream = next(e["stream"] for e in recorded if e["_id"] == event_id)
        streams.setdefault(stream, []).append(seen["body"])
    for stream, bodies in streams.items():
        assert [b["sequence"] for b in bodies] == list(range(1, len(bodies) + 1)), stream
    return streams


def upload_types(bodies: list[dict]) -> list[str]:
    return [b["type"] + (f":{b['data']['task_number']}" if b["type"] == "upload.task_ready"
                         else "") for b in bodies]
