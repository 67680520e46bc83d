"""Progressive tasks and their events, with the service started as the README
says (gunicorn, or Celery workers from the README's command), a real receiver
that fails and stalls on purpose, and kill -9 of a job process and of the
process delivering the events mid-upload.

A reader polls MongoDB all along: it must never see a task out of order,
change after it appeared, or vanish, and every task it sees must have its
clip and JPEGs in place.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import requests
from conftest import AUTH_KEY, service_env, wait_for
from event_receiver import Receiver, check_deliveries, events_env, upload_types, wait_delivered
from live_server import LiveServer
from media import cfr_video, clip_barcodes
from queue_fixtures import celery_workers, needs_redis, redis_server  # noqa: F401

from progressive_reader import Reader

from processes import owner_pid_here

FRAMES = 900  # 30 s at 30 fps, sampled at 30: 90 tasks of 10, in 6 segments of 5 s
TASKS = FRAMES // 10
EXPECTED_EVENTS = (["upload.accepted"] + [f"upload.task_ready:{n}" for n in range(1, TASKS + 1)]
                   + ["upload.completed"])


def assert_exact(mongo, contents: Path) -> None:
    """The single pass's result: every sampled frame once, in 90 tasks."""
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1, upload["errorMessage"]
    assert upload["readyTaskCount"] == upload["taskCount"] == TASKS
    tasks = mongo.frames.tasks_of("u1")
    assert [t["original_frames"] for t in tasks] == [list(range(i, i + 10))
                                                     for i in range(0, FRAMES, 10)]
    assert mongo.collections.frames.count_documents({}) == FRAMES
    for task in tasks[::11]:
        assert clip_barcodes(Path(task["videoPath"])) == task["original_frames"]
    assert len(list((contents / "tasks" / "p1" / "u1").iterdir())) == TASKS
    assert mongo.collections.staging.count_documents({}) == 0
    assert not list((contents / "tasks" / "p1").glob(".*"))
    assert not list((contents / "frames").glob(".*"))


def post_long_video(server: LiveServer) -> requests.Response:
    return requests.post(f"{server.base}/api/processContent", headers={"X-Auth-Key": AUTH_KEY},
                         json={"upload_id": "u1", "project_id": "p1", "frame_rate": 30,
                               "request_type": 0, "content_type": 1,
                               "content_path": "uploads/long.mp4"}, timeout=30)


def processes_under(root: int) -> dict[int, bytes]:
    """Every live descendant of ``root``: pid -> its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1]
                                               .split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                frontier.append(pid)
    return found


def the_one(root: int, marker: bytes, other_than: int = 0) -> int:
    """The one process under ``root`` whose command line has ``marker`` (waited for:
    a worker starts its sweeper once it is ready, a supervisor its deliverer)."""
    def found() -> list[int]:
        pids = [pid for pid, cmd in processes_under(root).items()
                if marker in cmd and pid != other_than]
        return pids if len(pids) == 1 else []
    return wait_for(found, 30, f"one {marker!r} process")[0]


def kill_a_segment_holder(mongo) -> int:
    running = wait_for(lambda: mongo.collections.jobs.find_one({"parent": "processContent:u1",
                                                                "state": "running"}),
                       what="a segment to be running")
    pid = owner_pid_here(running["owner"])
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.fixture
def flaky_receiver(tmp_path: Path):
    """Answers 500 to about 30 % of the calls and holds 10 % past the timeout."""
    receiver = Receiver(tmp_path).start(fail_rate=0.3, slow_rate=0.1)
    yield receiver
    receiver.stop()


@pytest.fixture
def env(env: dict[str, str], flaky_receiver: Receiver) -> dict[str, str]:
    """Events on for every process: the service's and this one's (the API client)."""
    return {**env, **events_env(flaky_receiver.url)}


def test_embedded_kill_9_of_a_job_process_and_of_the_deliverer(env, mongo, contents,
                                                               flaky_receiver):
    cfr_video(contents / "uploads" / "long.mp4", FRAMES, size=(480, 360))
    server = LiveServer({**env, "PROCESSING_SEGMENT_SECONDS": "5", "PROCESSING_WORKERS": "2"})
    reader = Reader(mongo, TASKS)
    try:
        server.wait_ready()
        deliverer = the_one(server.process.pid, b"events.deliverer")
        reader.start()
        answer = post_long_video(server)
        assert answer.status_code == 202, answer.text
        wait_for(lambda: mongo.uploads.ready_task_count("u1") >= 3, what="the first tasks")
        kill_a_segment_holder(mongo)
        wait_for(lambda: mongo.collections.outbox.count_documents({"state": "delivered"}) >= 5,
                 what="some events delivered")
        os.kill(deliverer, signal.SIGKILL)
        assert mongo.uploads.get_upload("u1")["status"] == 0, "the upload ended before the kills"
        wait_for(lambda: mongo.uploads.get_upload("u1")["status"] == 1, 240, "the upload to end")
        recorded = wait_delivered(mongo, 180)
        the_one(server.process.pid, b"events.deliverer", other_than=deliverer)  # restarted
    finally:
        reader.stop.set()
        server.stop()
    reader.finish()
    assert_exact(mongo, contents)
    streams = check_deliveries(flaky_receiver.calls(), recorded)
    assert upload_types(streams["u1"]) == EXPECTED_EVENTS
    calls = flaky_receiver.calls()
    assert len(calls) > len(recorded), "no attempt failed: the receiver was not flaky"


@needs_redis
def test_celery_kill_9_of_a_job_process_and_of_a_sweeper(env, mongo, contents, post,
                                                         flaky_receiver, redis_server,
                                                         celery_workers):
    worker_env = service_env({**env, "QUEUE_BROKER_URL": redis_server.url,
                              "QUEUE_RESUBMIT_SECONDS": "3", "QUEUE_SWEEP_SECONDS": "0.5",
                              "PROCESSING_SEGMENT_SECONDS": "5",
                              "PROCESSING_LEASE_SECONDS": "5"})
    cfr_video(contents / "uploads" / "long.mp4", FRAMES, size=(480, 360))
    workers = [celery_workers(name, "cut", worker_env) for name in ("a", "b")]
    sweepers = [the_one(w.proc.pid, b"engines.sweeper") for w in workers]
    reader = Reader(mongo, TASKS)
    reader.start()
    answer = post(content_path="uploads/long.mp4", frame_rate=30)
    assert answer.status_code == 202, answer.get_json()
    try:
        wait_for(lambda: mongo.uploads.ready_task_count("u1") >= 3, what="the first tasks")
        kill_a_segment_holder(mongo)
        wait_for(lambda: mongo.collections.outbox.count_documents({"state": "delivered"}) >= 5,
                 what="some events delivered")
        os.kill(sweepers[0], signal.SIGKILL)
        assert mongo.uploads.get_upload("u1")["status"] == 0, "the upload ended before the kills"
        wait_for(lambda: mongo.uploads.get_upload("u1")["status"] == 1, 240, "the upload to end")
        recorded = wait_delivered(mongo, 180)
        the_one(workers[0].proc.pid, b"engines.sweeper", other_than=sweepers[0])  # restarted
    finally:
        reader.stop.set()
    reader.finish()
    assert_exact(mongo, contents)
    streams = check_deliveries(flaky_receiver.calls(), recorded)
    assert upload_types(streams["u1"]) == EXPECTED_EVENTS


def test_receiver_down_for_the_whole_run_then_back(env, mongo, contents, tmp_path):
    """Processing does not wait for the receiver; its events arrive once it is back."""
    cfr_video(contents / "uploads" / "long.mp4", 300, size=(160, 120))
    absent = Receiver(tmp_path)  # its port, with nothing listening yet
    server = LiveServer({**env, **events_env(absent.url)})
    try:
        server.wait_ready()
        answer = post_long_video(server)
        assert answer.status_code == 202
        wait_for(lambda: mongo.uploads.get_upload("u1")["status"] == 1, 120, "the upload to end")
        wait_for(lambda: mongo.collections.outbox.find_one({"attempts": {"$gte": 2}}), 30, "retries")
        assert mongo.collections.outbox.count_documents({"state": "delivered"}) == 0
        absent.start()
        recorded = wait_delivered(mongo, 60)
    finally:
        server.stop()
        absent.stop()
    streams = check_deliveries(absent.calls(), recorded)
    assert upload_types(streams["u1"]) == (["upload.accepted"] + [
        f"upload.task_ready:{n}" for n in range(1, 31)] + ["upload.completed"])


def test_publishing_a_task_twice_at_once_moves_every_file_once(tmp_path: Path):
    """Two segments' processes publishing the same task, over a file a replaced
    run left under the same name: every file ends in place, from this run."""
    from concurrent.futures import ThreadPoolExecutor

    from storage.contents import RunPaths, publish_task_files

    paths = RunPaths(tmp_path, "p1", "u1", "run2")
    staged = paths.staging(paths.frames) / "task-3"
    staged.mkdir(parents=True)
    for frame in range(1, 201):
        (staged / f"{frame}.jpg").write_text(f"run2 {frame}")
    paths.staging(paths.clips).mkdir(parents=True)
    (paths.staging(paths.clips) / "task-3-v.mp4").write_text("run2 clip")
    (paths.frames / "task-3").mkdir(parents=True)
    (paths.frames / "task-3" / "7.jpg").write_text("run1 7")  # a replaced run's
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: publish_task_files(paths, "task-3-v.mp4", 3), range(4)))
    final = paths.frames / "task-3"
    assert sorted(p.name for p in final.iterdir()) == sorted(f"{n}.jpg" for n in range(1, 201))
    assert all((final / f"{n}.jpg").read_text() == f"run2 {n}" for n in range(1, 201))
    assert (paths.clips / "task-3-v.mp4").read_text() == "run2 clip"
    assert not staged.exists()
