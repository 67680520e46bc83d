"""Signed events to the backend, from a durable outbox (README "Events").

A real receiver process (``tests/webhook_receiver.py``) that fails and stalls
on purpose; the service started as the README says; the checks of
``event_receiver.check_deliveries`` on what the receiver saw.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import AUTH_KEY, wait_for
from event_receiver import SECRET, Receiver, check_deliveries, events_env, upload_types
from media import cfr_video
from test_annotation import aa_client, model_dirs, post_aa, run_all, square_video  # noqa: F401
from test_annotation import versions_env  # noqa: F401
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import events
from config import load_config
from events.deliverer import Deliverer, backoff, body_of, post, signed_headers
from exceptions import ConfigError
from mongo_manager import MongoManager, now, resolve_uri

KEY = {"X-Auth-Key": AUTH_KEY}


@pytest.fixture
def receiver(tmp_path: Path):
    started: list[Receiver] = []

    def start(port: int | None = None, **kwargs) -> Receiver:
        started.append(Receiver(tmp_path, port).start(**kwargs))
        return started[-1]
    yield start
    for one in started:
        one.stop()


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """Events on (to a port where nothing listens until a test starts a receiver)."""
    return {**env, **events_env("http://127.0.0.1:9/hooks")}


@pytest.fixture
def deliverer(config, mongo):
    """A deliverer thread in this process, sending to ``url``."""
    stops: list[threading.Event] = []

    def start(url: str, **fields) -> threading.Thread:
        settings = config.events.__class__(**{**config.events.__dict__, "url": url, **fields})
        stops.append(threading.Event())
        thread = threading.Thread(target=Deliverer(settings, mongo, "test-deliverer").run,
                                  args=(stops[-1],), daemon=True)
        thread.stop = stops[-1]
        thread.start()
        return thread
    yield start
    for stop in stops:
        stop.set()


def outbox(mongo, stream: str = "u1") -> list[dict]:
    return list(mongo.collections.outbox.find({"stream": stream}).sort("sequence", 1))


def types(events: list[dict]) -> list[str]:
    return upload_types([{"type": e["type"], "data": e["data"]} for e in events])


@pytest.mark.parametrize("overrides, message", [
    ({"EVENTS_URL": "ftp://host/x"}, "events.url must be empty or an http"),
    ({"EVENTS_URL": "http:///path"}, "events.url must be empty or an http"),
    ({"EVENTS_URL": "file:///etc/passwd"}, "events.url must be empty or an http"),
    ({"EVENTS_SECRET": ""}, "events.secret must be a Standard Webhooks secret"),
    ({"EVENTS_SECRET": "not-base64!"}, "events.secret must be a Standard Webhooks secret"),
    ({"EVENTS_SECRET": "whsec_c2hvcnQ="}, "events.secret must be a Standard Webhooks secret"),
    # Typos that parse as URLs but that no POST can reach (each was a silent stall):
    ({"EVENTS_URL": "http://127.0.0.1:99999/hooks"}, "out of range"),
    ({"EVENTS_URL": "http://127.0.0.1:abc/hooks"}, "events.url must be empty or an http"),
    ({"EVENTS_URL": "http://exa mple.com/hooks"}, "no spaces"),
    ({"EVENTS_URL": "http://example.com/\nhooks"}, "no spaces"),
    ({"EVENTS_URL": "http://user:pw@example.com/hooks"}, "no user:password"),
    ({"EVENTS_MAX_ATTEMPTS": "0"}, "events.max_attempts must be between"),
    ({"EVENTS_TIMEOUT_SECONDS": "x"}, "events.timeout_seconds must be a number"),
    ({"EVENTS_BACKOFF_SECONDS": "10", "EVENTS_MAX_BACKOFF_SECONDS": "5"},
     "events.max_backoff_seconds must be at least events.backoff_seconds"),
])
def test_bad_event_settings_stop_start_up(env, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env={**env, **overrides})


def record_events(mongo: MongoManager, stream: str, recorded: list[events.Event]) -> None:
    """``add_events`` on its own, as if for a change already durable."""
    mongo.atomically(lambda session: mongo.outbox.add_events(stream, recorded, session))


def test_no_url_means_no_events(env, mongo):
    off = load_config(env={**env, "EVENTS_URL": ""})
    assert off.events.enabled is False and load_config(env=env).events.enabled is True
    quiet = MongoManager(resolve_uri(off), off.mongodb.database,
                         record_events=off.events.enabled)
    record_events(quiet, "u1", [events.completed("u1", 1)])
    quiet.close()
    assert mongo.collections.outbox.count_documents({}) == 0
    record_events(mongo, "u1", [events.completed("u1", 1)])
    assert mongo.collections.outbox.count_documents({}) == 1


def test_signature_verifies_with_the_standard_library_and_not_when_tampered():
    event = {"_id": "msg_1", "type": "upload.completed", "sequence": 3, "createdAt": now(),
             "data": {"upload_id": "u1", "task_count": 2}}
    body = body_of(event)
    headers = signed_headers(Webhook(SECRET), event["_id"], body)
    assert Webhook(SECRET).verify(body, headers)["sequence"] == 3
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace('"task_count":2', '"task_count":3'), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(body, headers)


class HostileReceiver:
    """A raw TCP peer that answers every connection with ``answer`` (bytes, or a
    callable given the socket), and records the request lines it was sent."""

    def __init__(self, answer) -> None:
        self.answer, self.requests = answer, []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hooks?to=me"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                peer, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(peer,), daemon=True).start()

    def _one(self, peer: socket.socket) -> None:
        with peer:
            try:
                self.requests.append(peer.recv(65536).split(b"\r\n")[0].decode())
                self.answer(peer) if callable(self.answer) else peer.sendall(self.answer)
                time.sleep(0.5)
            except OSError:
                pass


def _drip(peer: socket.socket) -> None:
    peer.sendall(b"HTTP/1.1 200 OK\r\n")
    for _ in range(200):
        peer.sendall(b"x")  # one byte of a header every 0.1 s: no read ever waits 1 s
        time.sleep(0.1)


def _huge(peer: socket.socket) -> None:
    peer.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n")
    for _ in range(1024):
        peer.sendall(b"\0" * 1048576)


@pytest.mark.parametrize("answer, outcome", [
    (b"HTTP/1.1 204 No Content\r\n\r\n", None),
    (b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n", "HTTP 500"),
    # urllib would follow this with a GET and no body, and call its 200 delivered
    (b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n", "HTTP 302"),
    (b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /x\r\ncontent-length: 0\r\n\r\n",
     "HTTP 307"),
    (lambda peer: time.sleep(5), "not delivered: timed out"),  # never answers
    (_drip, "not delivered: timed out"),  # answers a byte at a time
    (_huge, None),  # a 1 GiB answer: only its first KiB is read
    (b"garbage\r\n\r\n", "not delivered"),
])
def test_one_attempt_is_bounded_whatever_the_receiver_does(answer, outcome):
    peer = HostileReceiver(answer)
    body = '{"type":"upload.completed"}'
    started, before = time.monotonic(), _rss_mib()
    got = post(peer.url, {"content-type": "application/json"}, body, timeout=1.0)
    took = time.monotonic() - started
    assert (got is None) if outcome is None else got.startswith(outcome), got
    assert took < 1.5, f"the attempt took {took:.1f} s against a 1 s timeout"
    assert _rss_mib() - before < 32
    assert peer.requests == ["POST /hooks?to=me HTTP/1.1"]  # one POST, no redirect followed
    peer.server.close()


def _rss_mib() -> float:
    fields = Path("/proc/self/status").read_text().split("VmRSS:")[1].split()
    return int(fields[0]) / 1024


def test_a_send_that_raises_is_a_failed_attempt_and_the_event_goes_dead(
        post, contents, mongo, deliverer, monkeypatch):
    """Whatever goes wrong in an attempt counts against max_attempts: the event
    never loops through claim after claim with its stream stuck."""
    cfr_video(contents / "uploads" / "v.mp4", 15, size=(64, 48))
    assert post(content_path="uploads/v.mp4", frame_rate=30).status_code == 202
    monkeypatch.setattr("events.deliverer.post", lambda *args: 1 / 0)
    sender = deliverer("http://127.0.0.1:9/hooks", max_attempts=2, backoff_seconds=0.01,
                       max_backoff_seconds=0.02)
    first = wait_for(lambda: (events := outbox(mongo)) and events[0]["state"] == "dead"
                     and events[0], timeout=30)
    sender.stop.set()
    assert first["attempts"] == 2 and "ZeroDivisionError" in first["lastError"]


def test_backoff_doubles_with_jitter_up_to_the_cap(config):
    settings = config.events.__class__(**{**config.events.__dict__, "backoff_seconds": 1.0,
                                          "max_backoff_seconds": 10.0})
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (40, 10)]:
        waits = [backoff(settings, attempt) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling
        assert len(set(waits)) > 100  # jittered, not one value


def test_a_new_upload_records_its_events_in_order(post, run_jobs, contents, mongo):
    cfr_video(contents / "uploads" / "v.mp4", 35, size=(64, 48))
    assert post(content_path="uploads/v.mp4", frame_rate=30).status_code == 202
    assert types(outbox(mongo)) == ["upload.accepted"]
    assert run_jobs() == 1
    events = outbox(mongo)
    assert types(events) == ["upload.accepted", "upload.task_ready:1", "upload.task_ready:2",
                             "upload.task_ready:3", "upload.task_ready:4", "upload.completed"]
    assert [e["sequence"] for e in events] == [1, 2, 3, 4, 5, 6]
    tasks = mongo.frames.tasks_of("u1")
    ready = events[4]["data"]
    assert ready == {"upload_id": "u1", "task_id": str(tasks[3]["_id"]),
                     "task_name": "task-4-v", "task_number": 4,
                     "clip_path": tasks[3]["videoPath"], "frame_count": 5}
    assert events[-1]["data"] == {"upload_id": "u1", "task_count": 4}
    upload = mongo.uploads.get_upload("u1")
    assert upload["readyTaskCount"] == upload["taskCount"] == 4
    # force_write=1 replaces the tasks in one step; the upload's numbers go on.
    assert post(content_path="uploads/v.mp4", frame_rate=30, force_write=1).status_code == 202
    assert run_jobs() == 1
    again = outbox(mongo)[6:]
    assert types(again) == ["upload.accepted", "upload.task_ready:1", "upload.task_ready:2",
                            "upload.task_ready:3", "upload.task_ready:4", "upload.completed"]
    assert [e["sequence"] for e in again] == list(range(7, 13))
    assert again[0]["data"]["force_write"] == 1


def test_a_failed_upload_and_a_failed_dataset_say_why(post, run_jobs, contents, mongo, config):
    (contents / "uploads" / "bad.mp4").write_bytes(b"not a video at all" * 100)
    assert post(content_path="uploads/bad.mp4").status_code == 202
    run_jobs()
    events = outbox(mongo)
    assert types(events) == ["upload.accepted", "upload.failed"]
    assert events[1]["data"]["code"] == mongo.uploads.get_upload("u1")["errorMessage"]["code"]
    assert "bad.mp4" in events[1]["data"]["message"]
    assert str(contents) not in events[1]["data"]["message"]
    from dataset_data import make_tasks, make_version
    from intake import dataset_builds
    make_tasks(mongo, contents, "u2", 1)
    good, bad = make_version(mongo), make_version(mongo, exportFormats=["VOC"])
    for version in (good, bad):
        dataset_builds.build_here(mongo, config, version)
    done, failed = outbox(mongo, f"dataset:{good}"), outbox(mongo, f"dataset:{bad}")
    assert types(done) == ["dataset.completed"] and done[0]["data"]["image_count"] == 10
    assert types(failed) == ["dataset.failed"] and failed[0]["data"]["code"] == "bad_formats"


def test_dead_events_are_listed_and_sent_again(client, post, run_jobs, contents, mongo,
                                               receiver, deliverer):
    cfr_video(contents / "uploads" / "v.mp4", 15, size=(64, 48))
    assert post(content_path="uploads/v.mp4", frame_rate=30).status_code == 202
    run_jobs()
    failing = receiver(fail_rate=1.0)
    first = deliverer(failing.url, max_attempts=2)
    wait_for(lambda: all(e["state"] == "dead" for e in outbox(mongo)), 60, "dead events")
    assert len(failing.calls()) == 2 * len(outbox(mongo))  # max_attempts each
    assert client.get("/api/events?state=dead").status_code == 401
    listed = client.get("/api/events?state=dead", headers=KEY).get_json()["events"]
    assert [e["id"] for e in listed] == [e["_id"] for e in outbox(mongo)]
    assert listed[0]["lastError"] == "HTTP 500" and listed[0]["attempts"] == 2
    assert client.get("/api/events?state=sent", headers=KEY).status_code == 400
    assert client.get("/api/events?limit=0", headers=KEY).status_code == 400
    assert client.post("/api/events/msg_nope/redeliver", headers=KEY).status_code == 404
    first.stop.set()
    first.join(timeout=30)
    failing.stop()
    healthy = receiver()
    deliverer(healthy.url)
    for event in reversed(listed):  # asked for in any order: still sent in sequence
        answer = client.post(f"/api/events/{event['id']}/redeliver", headers=KEY)
        assert answer.status_code == 202 and answer.get_json()["state"] == "pending"
    wait_for(lambda: all(e["state"] == "delivered" for e in outbox(mongo)), 60, "redelivery")
    streams = check_deliveries(healthy.calls(), outbox(mongo))
    assert upload_types(streams["u1"]) == ["upload.accepted", "upload.task_ready:1",
                                           "upload.task_ready:2", "upload.completed"]


def test_a_failing_stream_never_holds_up_another(post, run_jobs, contents, mongo, receiver,
                                                 deliverer):
    """An event of one upload that keeps failing waits alone: other uploads' go on."""
    healthy = receiver()
    for upload in ("u1", "u2"):
        cfr_video(contents / "uploads" / f"{upload}.mp4", 15, size=(64, 48))
        assert post(upload_id=upload, content_path=f"uploads/{upload}.mp4").status_code == 202
    run_jobs()
    mongo.collections.outbox.update_many({"stream": "u1", "sequence": 1},  # u1's first event: in backoff
                                         {"$set": {"nextAttemptAt": now().replace(year=2100)}})
    deliverer(healthy.url)
    wait_for(lambda: all(e["state"] == "delivered" for e in outbox(mongo, "u2")), 60, "u2")
    assert all(e["state"] == "pending" for e in outbox(mongo, "u1"))
    assert all(c["headers"]["webhook-id"] not in {e["_id"] for e in outbox(mongo, "u1")}
               for c in healthy.calls())


def test_re_annotating_sends_annotation_completed(aa_client, versions_env, mongo, contents):
    """Cut with version 2 (its boxes tracked as the tasks are published), then
    request type 2 with version 3: accepted, then annotation.completed."""
    square_video(contents / "uploads" / "sq.mp4", 20)
    assert post_aa(aa_client).status_code == 202
    run_all(versions_env)
    first = outbox(mongo)
    assert types(first) == ["upload.accepted", "upload.task_ready:1", "upload.task_ready:2",
                            "upload.completed"]
    assert post_aa(aa_client, request_type=2, auto_anno_version=3).status_code == 202
    run_all(versions_env)
    again = outbox(mongo)[4:]
    assert types(again) == ["upload.accepted", "annotation.completed"]
    assert again[1]["data"] == {"upload_id": "u1", "version": 3, "task_count": 2}
    assert [e["sequence"] for e in again] == [5, 6]
