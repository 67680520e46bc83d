"""The event deliverer: POSTs the outbox's events to ``events.url``, signed the
Standard Webhooks way, at least once and in order per upload.

Every process that runs one (the embedded executor's supervisor starts it as
``python -m events.deliverer``; each Celery worker's sweeper runs it in a
thread) takes the first pending event of each stream whose time has come,
with a leased claim, so one sender holds an event at a time; a sender that
dies has its claim run out and another sends the event again (the receiver
sees the same ``webhook-id`` twice). A failed attempt waits, doubling each
time with jitter, and after ``events.max_attempts`` the event is ``dead``:
kept, listed by ``GET /api/events?state=dead``, sent again on request. Only
the stream of a failing event waits; the others go on, several at a time,
and nothing here ever blocks a job.
"""
from __future__ import annotations

import http.client
import json
import logging
import random
import socket
import sys
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook

from backoff import doubling
from config import EventsConfig, load_config
from mongo_manager import DatabaseError, MongoManager, get_mongo
from processes import helper_process_start, owner_id

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # how soon a newly recorded event is seen
SENDERS = 8  # streams sent to at once


def body_of(event: dict) -> str:
    """The JSON body of an event, as POSTed and signed."""
    return json.dumps({"type": event["type"], "timestamp": _iso(event["createdAt"]),
                       "sequence": event["sequence"], "data": event["data"]},
                      separators=(",", ":"), sort_keys=True)


def signed_headers(webhook: Webhook, event_id: str, body: str) -> dict[str, str]:
    """The Standard Webhooks headers: the id (the same on every attempt, so a
    receiver can drop duplicates), the time of this attempt, its signature."""
    at = datetime.now(timezone.utc)
    return {"webhook-id": event_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": webhook.sign(event_id, at, body),
            "content-type": "application/json", "user-agent": "content-processor"}


def post(url: str, headers: dict[str, str], body: str, timeout: float) -> str | None:
    """POST once; None when the receiver took it (2xx), else why not.

    ``timeout`` bounds the whole attempt, not each socket read: a receiver
    that answers a byte at a time would otherwise hold a sender for as long as
    it likes. A redirect is a failed attempt, never followed: urllib would
    follow a 302 with a GET and no body, and its 200 would mark an event
    delivered that nobody received.
    """
    parts = urllib.parse.urlsplit(url)
    opener = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    try:
        connection = opener(parts.hostname, parts.port, timeout=timeout)
    except (ValueError, http.client.HTTPException) as exc:  # config checks the url first
        return f"not delivered: {exc}"
    timed_out = threading.Event()
    deadline = threading.Timer(timeout, _cut, (connection, timed_out))
    deadline.start()
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.connect()
        if timed_out.is_set():  # the deadline passed while connecting: no socket to cut then
            raise TimeoutError
        connection.request("POST", target, body=body.encode(), headers=headers)
        response = connection.getresponse()
        response.read(1024)  # a receiver's answer is not ours to hold
        if timed_out.is_set():  # the cut can end a dripping answer that then parses
            raise TimeoutError
        return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except (OSError, http.client.HTTPException, ValueError) as exc:  # refused, reset, cut
        return f"not delivered: {'timed out' if timed_out.is_set() else exc}"
    finally:
        deadline.cancel()
        connection.close()


def _cut(connection: http.client.HTTPConnection, timed_out: threading.Event) -> None:
    """End an attempt past its deadline: shutting the socket wakes a blocked read."""
    timed_out.set()
    if connection.sock is not None:
        try:
            connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def backoff(settings: EventsConfig, attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt: doubling from
    backoff_seconds up to max_backoff_seconds, drawn from its upper half."""
    ceiling = doubling(settings.backoff_seconds, attempts - 1, settings.max_backoff_seconds)
    return ceiling * random.uniform(0.5, 1.0)


class Deliverer:
    """Sends due events, ``SENDERS`` streams at a time, until ``stop``."""

    def __init__(self, settings: EventsConfig, mongo: MongoManager, owner: str) -> None:
        self.settings, self.mongo, self.owner = settings, mongo, owner
        self.webhook = Webhook(settings.secret)
        self.busy: set[str] = set()  # streams with an attempt in flight here
        self.lock = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="event-sender") as pool:
            while not stop.wait(POLL_SECONDS):
                try:
                    for event in self._claim_due():
                        pool.submit(self._send, event)
                except DatabaseError as exc:
                    log.warning("database error, delivering later: %s", exc)

    def _claim_due(self) -> list[dict]:
        now = datetime.now(timezone.utc)
        claimed = []
        outbox = self.mongo.outbox
        for head in outbox.event_heads():
            with self.lock:
                if len(self.busy) >= SENDERS:
                    break
                if head["stream"] in self.busy or head["nextAttemptAt"] > now:
                    continue
            event = outbox.claim_event(head["_id"], self.owner, self._lease())
            if event is not None:
                with self.lock:
                    self.busy.add(event["stream"])
                claimed.append(event)
        return claimed

    def _send(self, event: dict | None) -> None:
        """Send the stream's events while the receiver takes them (each success
        goes straight on to the stream's next one: no wait for the next poll)."""
        stream = event["stream"]
        try:
            while event is not None and self._attempt(event):
                head = self.mongo.outbox.stream_head(stream)
                event = head and self.mongo.outbox.claim_event(head["_id"], self.owner,
                                                               self._lease())
        except DatabaseError as exc:  # the claim runs out; the event is sent again
            log.warning("stream %s: database error: %s", stream, exc)
        finally:
            with self.lock:
                self.busy.discard(stream)

    def _lease(self) -> float:
        # Past the POST's timeout: a claim outlives its attempt only when this
        # process died, and then another sender takes over.
        return self.settings.timeout_seconds + 10

    def _attempt(self, event: dict) -> bool:
        """One POST of ``event``; True when the receiver took it."""
        body = body_of(event)
        try:
            error = post(self.settings.url, signed_headers(self.webhook, event["_id"], body),
                         body, self.settings.timeout_seconds)
        except Exception as exc:  # noqa: BLE001 -- counted as a failed attempt, so the
            # event still goes dead after max_attempts instead of being claimed forever
            log.exception("event %s: sending failed", event["_id"])
            error = f"not delivered: {exc!r}"
        if error is None:
            self.mongo.outbox.event_sent(event["_id"], self.owner)
            return True
        dead = event["attempts"] >= self.settings.max_attempts
        log.log(logging.WARNING if dead else logging.INFO, "event %s (%s) attempt %d: %s%s",
                event["_id"], event["type"], event["attempts"], error,
                "; giving up (dead)" if dead else "")
        retry_in = None if dead else backoff(self.settings, event["attempts"])
        self.mongo.outbox.event_not_sent(event["_id"], self.owner, error, retry_in)
        return False


def deliver(stop: threading.Event) -> None:
    """Run a deliverer for this process's configuration until ``stop``."""
    config = load_config(require_auth_key=False)  # serves no HTTP
    if not config.events.enabled:
        return
    Deliverer(config.events, get_mongo(config), owner_id()).run(stop)


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> int:
    deliver(helper_process_start(__doc__.splitlines()[0], argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
