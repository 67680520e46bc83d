"""force_write both ways, retries after errors, and concurrent duplicate requests."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import AUTH_KEY, wait_for
from media import cfr_video

from engines.embedded import worker_loop


def finished(post, run_jobs, mongo, **fields) -> list[dict]:
    assert post(**fields).status_code == 202
    assert run_jobs() == 1
    assert mongo.uploads.get_upload("u1")["status"] == 1
    return mongo.frames.tasks_of("u1")


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_same_request_again_redoes_nothing(contents, post, run_jobs, mongo):
    cfr_video(contents / "uploads" / "v.mp4", 60)
    tasks = finished(post, run_jobs, mongo, content_path="uploads/v.mp4")
    run_id = mongo.jobs.get_job("processContent:u1")["runId"]
    clip = Path(tasks[0]["videoPath"])
    stamp = clip.stat().st_mtime_ns
    response = post(content_path="uploads/v.mp4", frame_rate="5")
    assert response.status_code == 200
    assert response.json["status"] == 1 and response.json["taskCount"] == len(tasks)
    assert run_jobs() == 0
    assert mongo.jobs.get_job("processContent:u1")["runId"] == run_id
    assert [t["_id"] for t in mongo.frames.tasks_of("u1")] == [t["_id"] for t in tasks]
    assert clip.stat().st_mtime_ns == stamp


def test_other_parameters_without_force_is_409(contents, post, run_jobs, mongo):
    cfr_video(contents / "uploads" / "v.mp4", 60)
    finished(post, run_jobs, mongo, content_path="uploads/v.mp4")
    response = post(content_path="uploads/v.mp4", frame_rate=10)
    assert response.status_code == 409 and response.json["code"] == "already_processed"


def test_force_write_replaces_everything(contents, post, run_jobs, mongo):
    cfr_video(contents / "uploads" / "v.mp4", 60)
    old = finished(post, run_jobs, mongo, content_path="uploads/v.mp4", frame_rate=5)
    assert len(old) == 1
    new = finished(post, run_jobs, mongo, content_path="uploads/v.mp4", frame_rate=15,
                   force_write=1)
    assert [t["frameCount"] for t in new] == [10, 10, 10]
    assert all(t["frameRate"] == 15 for t in new)
    assert not {t["_id"] for t in old} & {t["_id"] for t in new}
    assert mongo.collections.frames.count_documents({"taskId": {"$in": [t["_id"] for t in old]}}) == 0
    assert mongo.collections.frames.count_documents({}) == 30
    assert files(contents / "tasks" / "p1" / "u1") == {f"task-{n}-v.mp4" for n in (1, 2, 3)}
    assert files(contents / "frames" / "u1") == {f"task-{n}/{k}.jpg" for n in (1, 2, 3)
                                                 for k in range(1, 11)}
    assert mongo.collections.staging.count_documents({}) == 0
    assert [p.name for p in (contents / "tasks" / "p1").iterdir()] == ["u1"]


def test_reader_never_sees_old_and_new_tasks_mixed(contents, post, run_jobs, mongo, config):
    cfr_video(contents / "uploads" / "v.mp4", 240)
    finished(post, run_jobs, mongo, content_path="uploads/v.mp4", frame_rate=10)
    post(content_path="uploads/v.mp4", frame_rate=30, force_write=1)
    snapshots, stop = [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            snapshots.append({t["frameRate"] for t in mongo.frames.tasks_of("u1")})

    reader = threading.Thread(target=read)
    reader.start()
    worker_loop(config, threading.Event(), drain=True)
    stop.set()
    reader.join()
    assert {10} in snapshots or {30} in snapshots
    assert all(len(rates) == 1 for rates in snapshots), [s for s in snapshots if len(s) != 1]
    assert {t["frameRate"] for t in mongo.frames.tasks_of("u1")} == {30}


def test_force_write_while_running_restarts_the_job(contents, post, mongo, config):
    cfr_video(contents / "uploads" / "long.mp4", 600, size=(640, 480))
    assert post(content_path="uploads/long.mp4", frame_rate=30).status_code == 202
    worker = threading.Thread(target=worker_loop, args=(config, threading.Event(), True))
    worker.start()
    deadline = time.monotonic() + 60
    while mongo.uploads.get_upload("u1")["progress"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert post(content_path="uploads/long.mp4", frame_rate=2, force_write=1).status_code == 202
    worker.join()
    worker_loop(config, threading.Event(), drain=True)  # the replacement run, if not yet taken
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1 and upload["frame_rate"] == 2
    tasks = mongo.frames.tasks_of("u1")
    assert {t["frameRate"] for t in tasks} == {2} and sum(t["frameCount"] for t in tasks) == 40
    assert mongo.collections.staging.count_documents({}) == 0
    assert mongo.collections.frames.count_documents({}) == 40
    assert not list((contents / "tasks" / "p1").glob(".staging-*"))


def test_failed_upload_can_be_retried_without_force(contents, post, run_jobs, mongo):
    (contents / "uploads" / "v.mp4").write_text("not yet a video")
    post(content_path="uploads/v.mp4")
    run_jobs()
    assert mongo.uploads.get_upload("u1")["status"] == 2
    cfr_video(contents / "uploads" / "v.mp4", 30)
    tasks = finished(post, run_jobs, mongo, content_path="uploads/v.mp4")
    assert len(tasks) == 1 and mongo.uploads.get_upload("u1")["errorMessage"] is None


def test_concurrent_duplicate_requests_run_one_job(app, contents, mongo, run_jobs):
    cfr_video(contents / "uploads" / "v.mp4", 30)
    body = {"auth_key": AUTH_KEY, "upload_id": "u1", "project_id": "p1", "frame_rate": 5,
            "content_path": "uploads/v.mp4"}
    barrier = threading.Barrier(12)

    def send(_):
        client = app.test_client()
        barrier.wait()
        return client.post("/api/processContent", json=body).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(send, range(12)))
    assert sorted(codes) == [202] + [409] * 11
    assert mongo.collections.jobs.count_documents({}) == 1
    assert run_jobs() == 1
    assert run_jobs() == 0
    assert len(mongo.frames.tasks_of("u1")) == 1


@pytest.mark.parametrize("store, read", [("jobs", "get_job"), ("uploads", "get_upload")])
def test_a_duplicate_racing_the_end_of_a_run_never_redoes_it(contents, post, run_jobs, mongo,
                                                             monkeypatch, store, read):
    """A Node.js retry or a double click that reads the upload while its job
    runs, and decides after the job ended: answered 409 or 200, never a restart.

    The race is forced, not waited for: the job is run to its end right after
    the duplicate's ``read`` of the database."""
    cfr_video(contents / "uploads" / "v.mp4", 30, size=(64, 48))
    assert post(content_path="uploads/v.mp4").status_code == 202
    run_id = mongo.jobs.get_job("processContent:u1")["runId"]
    store = getattr(mongo, store)
    original, ran = getattr(store, read), []

    def read_then_job_ends(*args):
        value = original(*args)
        if not ran:
            ran.append(run_jobs())
        return value

    monkeypatch.setattr(store, read, read_then_job_ends)
    answer = post(content_path="uploads/v.mp4")
    assert ran == [1]
    assert answer.status_code in (200, 409), answer.get_json()
    tasks = [t["_id"] for t in mongo.frames.tasks_of("u1")]
    assert run_jobs() == 0, "the duplicate started the upload over"
    assert mongo.jobs.get_job("processContent:u1")["runId"] == run_id
    assert mongo.uploads.get_upload("u1")["status"] == 1
    assert [t["_id"] for t in mongo.frames.tasks_of("u1")] == tasks and tasks


def test_a_start_decided_on_a_stale_read_is_refused(mongo):
    """The compare-and-set under accept: a job that ended after it was read is
    not started over; a job read as absent is not overwritten once it exists."""
    params = {"upload_id": "u1"}
    assert mongo.jobs.start_job("j", "processContent", params, "r1", replace_active=False, seen=None)
    assert not mongo.jobs.start_job("j", "processContent", params, "r2", replace_active=False,
                                    seen=None)
    seen = mongo.jobs.get_job("j")  # accepting: busy
    assert not mongo.jobs.start_job("j", "processContent", params, "r2", replace_active=False,
                                    seen=seen)
    mongo.jobs.end_job("j", "r1", "failed")
    stale = {**seen, "state": "running"}
    assert not mongo.jobs.start_job("j", "processContent", params, "r2", replace_active=False,
                                    seen={**stale, "state": "done"})
    ended = mongo.jobs.get_job("j")
    assert mongo.jobs.start_job("j", "processContent", params, "r2", replace_active=False, seen=ended)
    assert mongo.jobs.get_job("j")["runId"] == "r2"


def test_annotating_never_stops_a_cut_even_with_force(contents, post, mongo, config):
    """Request type 2 with force_write=1 while a new upload is being cut (its
    first tasks already published): 409, and the cut goes on to every task.
    It used to cancel the cut and end the upload complete with a few tasks."""
    cfr_video(contents / "uploads" / "long.mp4", 1200, size=(160, 120))
    assert post(content_path="uploads/long.mp4", frame_rate=30).status_code == 202
    worker = threading.Thread(target=worker_loop, args=(config, threading.Event(), True))
    worker.start()
    try:
        wait_for(lambda: (mongo.uploads.get_upload("u1") or {}).get("readyTaskCount", 0) >= 2, 120,
                 "the first tasks")
        answer = post(request_type=2, auto_anno_version=1, force_write=1, frame_rate=None)
        assert mongo.uploads.get_upload("u1")["readyTaskCount"] < 120  # still cutting when refused
        assert answer.status_code == 409 and answer.json["code"] == "in_progress", answer.json
    finally:
        worker.join()
    worker_loop(config, threading.Event(), drain=True)
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1 and upload["taskCount"] == mongo.frames.count_tasks("u1") == 120


def test_a_cut_that_failed_half_way_is_not_annotated_into_complete(contents, post, run_jobs,
                                                                   mongo):
    from test_bad_input import make_truncated
    name = make_truncated(contents / "uploads")
    assert post(content_path=f"uploads/{name}").status_code == 202
    run_jobs()
    failed = mongo.uploads.get_upload("u1")
    assert failed["status"] == 2 and mongo.frames.count_tasks("u1") >= 1  # published tasks stay
    for force in (0, 1):
        answer = post(request_type=2, auto_anno_version=1, force_write=force, frame_rate=None)
        assert answer.status_code == 409 and answer.json["code"] == "cut_incomplete", answer.json
    assert mongo.uploads.get_upload("u1")["status"] == 2
    cfr_video(contents / "uploads" / "v.mp4", 30, size=(64, 48))  # cut again, then annotate
    assert post(content_path="uploads/v.mp4", force_write=1).status_code == 202
    run_jobs()
    assert post(request_type=2, auto_anno_version=1, frame_rate=None).status_code == 202
    run_jobs()
    assert mongo.uploads.get_upload("u1")["status"] == 1


def test_force_write_to_another_project_leaves_nothing_of_the_old_one(contents, post, run_jobs,
                                                                       mongo):
    cfr_video(contents / "uploads" / "v.mp4", 60)
    assert post(content_path="uploads/v.mp4").status_code == 202
    run_jobs()
    assert (contents / "tasks" / "p1" / "u1").is_dir()
    assert post(content_path="uploads/v.mp4", project_id="p2", force_write=1).status_code == 202
    run_jobs()
    assert mongo.uploads.get_upload("u1")["status"] == 1
    assert not list((contents / "tasks" / "p1").iterdir())  # no clip of the replaced run
    assert len(list((contents / "tasks" / "p2" / "u1").iterdir())) == mongo.frames.count_tasks("u1")
    lists = {str(doc["_id"]): doc.get("contentUploads") for doc in mongo.collections.projects.find()}
    assert lists == {"p1": [], "p2": ["u1"]}, lists


def test_racing_force_writes_leave_the_upload_as_its_tasks(contents, app, mongo, run_jobs):
    """Six force_write requests at once with six frame rates: the upload records
    the one whose run won, the one its tasks were cut at."""
    cfr_video(contents / "uploads" / "v.mp4", 60, size=(64, 48))
    for trial in range(4):
        upload_id, barrier = f"u{trial}", threading.Barrier(6)

        def send(rate: int):
            client = app.test_client()
            barrier.wait()
            return client.post("/api/processContent", json={
                "auth_key": AUTH_KEY, "upload_id": upload_id, "project_id": "p1",
                "frame_rate": rate, "content_path": "uploads/v.mp4", "force_write": 1})
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(send, [1, 2, 3, 5, 6, 10]))
        assert all(answer.status_code in (202, 409) for answer in answers)
        run_jobs()
        upload = mongo.uploads.get_upload(upload_id)
        rates = {task["frameRate"] for task in mongo.frames.tasks_of(upload_id)}
        job = mongo.jobs.get_job(f"processContent:{upload_id}")
        assert upload["status"] == 1 and rates == {upload["frame_rate"]} == {
            job["params"]["frame_rate"]}, (upload["frame_rate"], rates)


def test_a_task_staged_after_its_run_ended_leaves_nothing(mongo):
    """A segment still cutting when force_write replaced its run can stage a
    task after the run's discard: it must take it back (10 frame documents
    matching no task were left, 1 run in 5)."""
    from jobs.documents import task_object_id
    from job_states import JobKind, JobState, upload_job_id

    job_id = upload_job_id("u9")
    for run_id, replace in (("old", False), ("new", True)):  # the second is the force_write
        assert mongo.jobs.start_job(job_id, JobKind.CONTENT, {"upload_id": "u9"}, run_id,
                                    replace_active=replace)
    staged = {}
    for run_id in ("old", "new"):
        staged[run_id] = {"_id": task_object_id(run_id, 3)}
        mongo.runs.stage_task("u9", run_id, 3, staged[run_id],
                              [{"taskId": staged[run_id]["_id"], "frameId": 1}])
    assert mongo.runs.unstage_if_ended("u9", "old", staged["old"]["_id"])
    assert not mongo.runs.unstage_if_ended("u9", "new", staged["new"]["_id"])
    assert [doc["taskId"] for doc in mongo.collections.frames.find()] == [staged["new"]["_id"]]
    assert [doc["_id"] for doc in mongo.collections.staging.find()] == [staged["new"]["_id"]]
    # A failed run takes back what it stages too, except a task it published.
    mongo.collections.jobs.update_one({"_id": job_id}, {"$set": {"state": JobState.FAILED}})
    mongo.collections.tasks.insert_one({"_id": staged["new"]["_id"], "uploadId": "u9"})
    assert mongo.runs.unstage_if_ended("u9", "new", staged["new"]["_id"])
    assert mongo.collections.frames.count_documents({}) == 1 and mongo.collections.staging.count_documents({}) == 0


def test_a_single_pass_failing_after_its_run_was_replaced_just_stops(contents, post, run_jobs,
                                                                     mongo, config, monkeypatch,
                                                                     caplog):
    """force_write removes the old run's staging under a cut still going; the
    error that follows is the run's end (INFO), not a failure logged with a
    traceback, and the new run ends exact."""
    from jobs import content as content_jobs
    from jobs.claims import claim
    from jobs.context import JobContext
    from mongo_manager import owner_id

    cfr_video(contents / "uploads" / "v.mp4", 60)
    assert post(content_path="uploads/v.mp4", frame_rate=5).status_code == 202
    job = claim(mongo, owner_id(), 30, "processContent:u1")

    def replaced_under_it(*_):
        assert post(content_path="uploads/v.mp4", frame_rate=15,
                    force_write=1).status_code == 202
        raise FileNotFoundError("the staging folder went")
    monkeypatch.setattr(content_jobs, "_cut", replaced_under_it)
    caplog.set_level("INFO")
    content_jobs.run_content_job(job, JobContext(mongo, config, owner_id()))
    assert "processing stopped: its run ended under it" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    monkeypatch.undo()
    assert run_jobs() == 1
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1 and [t["frameCount"] for t in mongo.frames.tasks_of("u1")] == [10] * 3


def test_a_run_that_ended_failed_under_its_cut_leaves_no_staging(contents, post, mongo, config,
                                                                  monkeypatch):
    """A cut told its run has ended (here: failed by another holder, same run
    id) discards what it staged; only a run taken over while still active
    keeps its staging for the new holder."""
    from exceptions import JobCancelled
    from jobs import content as content_jobs
    from jobs.claims import claim
    from jobs.context import JobContext
    from mongo_manager import owner_id
    from storage.contents import RunPaths

    cfr_video(contents / "uploads" / "v.mp4", 60)
    assert post(content_path="uploads/v.mp4", frame_rate=5).status_code == 202
    job = claim(mongo, owner_id(), 30, "processContent:u1")
    paths = RunPaths(config.contents_dir, "p1", "u1", job.run_id)

    def failed_under_it(*_):
        for staging, _ in paths.pairs():
            staging.mkdir(parents=True)
        assert mongo.jobs.end_job(job.id, job.run_id, "failed", {"code": "stalled"})
        raise JobCancelled("the run ended while this task was staged")
    monkeypatch.setattr(content_jobs, "_cut", failed_under_it)
    content_jobs.run_content_job(job, JobContext(mongo, config, owner_id()))
    assert not list(contents.rglob(".staging-*"))
