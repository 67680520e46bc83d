"""POST/GET /api/processContent and /api/health: every rule and error code."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import AUTH_KEY
from media import cfr_video


@pytest.fixture
def video(contents: Path) -> Path:
    return cfr_video(contents / "uploads" / "clip.mp4", 30)


def valid(**fields):
    body = {"auth_key": AUTH_KEY, "upload_id": "u1", "project_id": "p1", "frame_rate": 5,
            "content_path": "uploads/clip.mp4", "force_write": 0, "auto_anno_version": 0,
            "request_type": 0, "content_type": 1}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


# -- authentication ------------------------------------------------------------

@pytest.mark.parametrize("headers,body_key,status", [
    ({}, None, 401),
    ({}, "wrong", 401),
    ({}, "", 401),
    ({"X-Auth-Key": "wrong"}, None, 401),
    ({}, AUTH_KEY[:-1], 401),
    ({}, AUTH_KEY + "x", 401),
    ({"X-Auth-Key": AUTH_KEY}, None, 202),
    ({}, AUTH_KEY, 202),
])
def test_auth(client, mongo, video, headers, body_key, status):
    response = client.post("/api/processContent", json=valid(auth_key=body_key), headers=headers)
    assert response.status_code == status
    assert response.json["message"]


def test_auth_checked_before_validation(client, mongo):
    response = client.post("/api/processContent", json={"upload_id": "x"})
    assert response.status_code == 401
    assert mongo.uploads.get_upload("x") is None


def test_status_needs_key(client, mongo):
    assert client.get("/api/processContent/u1").status_code == 401


# -- validation ----------------------------------------------------------------

@pytest.mark.parametrize("fields,bad", [
    ({"upload_id": None}, {"upload_id"}),
    ({"project_id": None}, {"project_id"}),
    ({"upload_id": "a/b"}, {"upload_id"}),
    ({"upload_id": "x" * 65}, {"upload_id"}),
    ({"upload_id": 12}, {"upload_id"}),
    ({"frame_rate": None}, {"frame_rate"}),
    ({"frame_rate": 0}, {"frame_rate"}),
    ({"frame_rate": 121}, {"frame_rate"}),
    ({"frame_rate": "abc"}, {"frame_rate"}),
    ({"frame_rate": 2.5}, {"frame_rate"}),
    ({"frame_rate": True}, {"frame_rate"}),
    ({"frame_rate": "٥"}, {"frame_rate"}),  # a digit to int(): text is ASCII digits
    ({"frame_rate": "1_0"}, {"frame_rate"}),
    ({"force_write": "9" * 5000}, {"force_write"}),
    ({"force_write": 2}, {"force_write"}),
    ({"request_type": 3}, {"request_type"}),
    ({"request_type": -1}, {"request_type"}),
    ({"content_type": 0}, {"content_type"}),
    ({"content_type": 3}, {"content_type"}),
    ({"auto_anno_version": -1}, {"auto_anno_version"}),
    ({"content_path": None}, {"content_path"}),
    ({"task_split": "Shots"}, {"task_split"}),
    ({"task_split": 1}, {"task_split"}),
    ({"task_split": ["shots"]}, {"task_split"}),
    ({"skip_still": 2}, {"skip_still"}),
    ({"skip_still": "yes"}, {"skip_still"}),
    ({"request_type": 1, "auto_anno_version": 0}, {"auto_anno_version"}),
    ({"upload_id": None, "frame_rate": "x", "content_type": 9},
     {"upload_id", "frame_rate", "content_type"}),
])
def test_bad_fields_are_all_listed(client, mongo, video, fields, bad):
    response = client.post("/api/processContent", json=valid(**fields))
    assert response.status_code == 400
    assert set(response.json["errors"]) == bad
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("fields", [
    {"frame_rate": "5", "force_write": "0", "request_type": "0", "content_type": "1"},
    {"frame_rate": " 5 "},
    {"frame_rate": 120},
    {"frame_rate": 1},
    {"frame_rate": 5.0},
    {"auto_anno_version": "3"},
    {"upload_id": "5f0c6b2e9d3e4a1b2c3d4e5f", "project_id": "5f0c6b2e9d3e4a1b2c3d4e60"},
    {"task_split": "shots", "skip_still": "1"},
    {"task_split": " fixed ", "skip_still": None},
])
def test_valid_variants_accepted(client, mongo, video, fields):
    assert client.post("/api/processContent", json=valid(**fields)).status_code == 202


@pytest.mark.parametrize("sent,server,stored", [
    ({}, {}, ("fixed", 0)),
    ({}, {"PROCESSING_TASK_SPLIT": "shots", "PROCESSING_SKIP_STILL": "true"}, ("shots", 1)),
    ({"task_split": "fixed", "skip_still": 0},
     {"PROCESSING_TASK_SPLIT": "shots", "PROCESSING_SKIP_STILL": "true"}, ("fixed", 0)),
])
def test_task_split_and_skip_still_default_to_the_config(make_config, mongo, video, sent,
                                                         server, stored):
    """What a request does not say, the server's processing settings decide; the
    job and the upload record what was decided (a resumed run decides the same)."""
    from app import create_app
    client = create_app(make_config(**server)).test_client()
    assert client.post("/api/processContent", json=valid(**sent)).status_code == 202
    params = mongo.jobs.get_job("processContent:u1")["params"]
    upload = mongo.uploads.get_upload("u1")
    assert (params["task_split"], params["skip_still"]) == stored
    assert (upload["task_split"], upload["skip_still"]) == stored


@pytest.mark.parametrize("request_type", [1, 2])
def test_unknown_annotation_version_names_registered_ones(client, mongo, video, request_type):
    response = client.post("/api/processContent",
                           json=valid(request_type=request_type, auto_anno_version=7))
    assert response.status_code == 400
    assert response.json["errors"]["auto_anno_version"] == \
        "version 7 is not registered (registered: 1)"


def test_annotations_only_needs_existing_tasks(client, mongo):
    response = client.post("/api/processContent", json=valid(
        request_type=2, auto_anno_version=1, content_path=None, frame_rate=None))
    assert response.status_code == 409 and response.json["code"] == "no_tasks"


# -- bodies --------------------------------------------------------------------

def test_urlencoded_body(client, mongo, video):
    response = client.post("/api/processContent", data=valid())
    assert response.status_code == 202


def test_multipart_body(client, mongo, video):
    response = client.post("/api/processContent", data=valid(),
                           content_type="multipart/form-data")
    assert response.status_code == 202


@pytest.mark.parametrize("raw", ["[1, 2]", "not json", "\"text\""])
def test_json_body_must_be_object(client, mongo, raw):
    response = client.post("/api/processContent", data=raw, content_type="application/json",
                           headers={"X-Auth-Key": AUTH_KEY})
    assert response.status_code == 400
    assert "body" in response.json["errors"]


# -- content_path confinement ------------------------------------------------

def test_missing_path_is_404(client, mongo):
    response = client.post("/api/processContent", json=valid(content_path="uploads/none.mp4"))
    assert response.status_code == 404
    assert "none.mp4" in response.json["message"]


@pytest.mark.parametrize("path", ["../outside.mp4", "uploads/../../outside.mp4",
                                  "/etc/passwd", "/tmp", "uploads/../../../etc/passwd"])
def test_path_escapes_rejected(client, mongo, contents, path):
    (contents.parent / "outside.mp4").write_bytes(b"x")
    response = client.post("/api/processContent", json=valid(content_path=path))
    assert response.status_code == 400
    assert set(response.json["errors"]) == {"content_path"}


def test_symlink_escape_rejected(client, mongo, contents, tmp_path):
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"secret")
    os.symlink(secret, contents / "uploads" / "link.mp4")
    response = client.post("/api/processContent", json=valid(content_path="uploads/link.mp4"))
    assert response.status_code == 400


def test_absolute_path_inside_accepted(client, mongo, video):
    response = client.post("/api/processContent", json=valid(content_path=str(video)))
    assert response.status_code == 202


@pytest.mark.parametrize("content_path", ["contents/uploads/clip.mp4",
                                          "./contents/uploads/clip.mp4"])
@pytest.mark.parametrize("working_folder", ["above contents", "elsewhere"])
def test_contents_prefixed_path_accepted(client, mongo, contents, video, monkeypatch, tmp_path,
                                         content_path, working_folder):
    """The original callers' form: "contents" names contents_dir wherever it is."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(contents.parent if working_folder == "above contents" else elsewhere)
    response = client.post("/api/processContent", json=valid(content_path=content_path))
    assert response.status_code == 202, response.json
    assert mongo.jobs.get_job(f"processContent:{valid()['upload_id']}")["params"][
        "content_path"] == str(video)


def test_contents_prefix_never_leaves_contents(client, mongo, contents, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"  # not above contents: "contents" names contents_dir
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (tmp_path / "outside.mp4").write_bytes(b"x")
    os.symlink(tmp_path / "outside.mp4", contents / "uploads" / "out.mp4")
    for path in ("contents/../outside.mp4", "contents/contents/../../outside.mp4",
                 "contents/uploads/out.mp4", "contents/uploads/none.mp4"):
        response = client.post("/api/processContent", json=valid(content_path=path))
        assert response.status_code in (400, 404), (path, response.json)


# -- what a 202 leaves behind ----------------------------------------------------

def test_accept_records_job_and_upload_before_answering(client, mongo, video):
    response = client.post("/api/processContent", json=valid(
        upload_id="5f0c6b2e9d3e4a1b2c3d4e5f", project_id="5f0c6b2e9d3e4a1b2c3d4e60"))
    assert response.status_code == 202
    body = response.json
    assert body["status_url"] == "/api/processContent/5f0c6b2e9d3e4a1b2c3d4e5f"
    from bson import ObjectId
    upload = mongo.collections.uploads.find_one({"_id": ObjectId("5f0c6b2e9d3e4a1b2c3d4e5f")})
    assert upload["status"] == 0 and upload["progress"] == 0 and upload["stage"] == "queued"
    assert upload["projectId"] == ObjectId("5f0c6b2e9d3e4a1b2c3d4e60")
    assert upload["frame_rate"] == 5 and upload["frames_per_task"] == 10
    assert upload["sourceFilePath"] == str(video.resolve())
    project = mongo.collections.projects.find_one({"_id": ObjectId("5f0c6b2e9d3e4a1b2c3d4e60")})
    assert project["contentUploads"] == [ObjectId("5f0c6b2e9d3e4a1b2c3d4e5f")]
    job = mongo.jobs.get_job("processContent:5f0c6b2e9d3e4a1b2c3d4e5f")
    assert job["state"] == "queued"


def test_project_lists_upload_once(client, mongo, video, run_jobs):
    client.post("/api/processContent", json=valid())
    run_jobs()
    client.post("/api/processContent", json=valid(force_write=1))
    assert mongo.collections.projects.find_one({"_id": "p1"})["contentUploads"] == ["u1"]


def test_busy_upload_is_409(client, mongo, video):
    assert client.post("/api/processContent", json=valid()).status_code == 202
    response = client.post("/api/processContent", json=valid())
    assert response.status_code == 409
    assert response.json["code"] == "in_progress"


def test_status_of_unknown_upload_is_404(client, mongo):
    response = client.get("/api/processContent/nope", headers={"X-Auth-Key": AUTH_KEY})
    assert response.status_code == 404


def test_status_reports_progress_and_result(client, mongo, video, run_jobs):
    client.post("/api/processContent", json=valid())
    queued = client.get("/api/processContent/u1", headers={"X-Auth-Key": AUTH_KEY}).json
    assert (queued["status"], queued["progress"], queued["stage"]) == (0, 0, "queued")
    run_jobs()
    done = client.get("/api/processContent/u1", headers={"X-Auth-Key": AUTH_KEY}).json
    assert (done["status"], done["progress"], done["stage"]) == (1, 100, "done")
    assert done["taskCount"] == 1 and done["errorMessage"] is None
    assert done["startedAt"] and done["finishedAt"] and done["timings"]["processingSeconds"] > 0


def test_unknown_route_is_json_404(client):
    response = client.get("/api/nothing")
    assert response.status_code == 404 and response.json["message"]


# -- dependencies down ----------------------------------------------------------

def test_database_down_is_503(make_config, contents):
    from app import create_app
    down = make_config(MONGODB_URI="mongodb://127.0.0.1:9/?directConnection=true",
                       MONGODB_TIMEOUT_MS="300")
    cfr_video(contents / "uploads" / "clip.mp4", 10)
    client = create_app(down).test_client()
    response = client.post("/api/processContent", json=valid())
    assert response.status_code == 503
    assert "Traceback" not in response.get_data(as_text=True)
    health = client.get("/api/health")
    assert health.status_code == 503
    assert health.json["checks"]["database"]["ok"] is False


def test_health_reports_each_dependency(client, mongo):
    response = client.get("/api/health")
    checks = response.json["checks"]
    assert set(checks) == {"database", "storage", "queue"}
    assert checks["database"]["ok"] and checks["storage"]["ok"]
    # No executor runs in this test, so accepted work would wait: not healthy.
    assert checks["queue"]["ok"] is False and response.status_code == 503
    assert AUTH_KEY not in response.get_data(as_text=True)


def test_health_ok_with_executor(client, mongo, contents):
    import fcntl
    with open(contents / "executor.lock", "a") as handle:  # what a running executor holds
        fcntl.flock(handle, fcntl.LOCK_EX)
        response = client.get("/api/health")
    assert response.status_code == 200 and response.json["status"] == "ok"


@pytest.mark.parametrize("age_seconds,status", [(5, 409), (120, 202)])
def test_request_that_died_while_accepting(client, mongo, video, age_seconds, status):
    """A job left "accepting" (its request died before answering) blocks only briefly."""
    from datetime import timedelta

    from mongo_manager import now
    mongo.collections.jobs.insert_one({"_id": "processContent:u1", "state": "accepting", "runId": "x",
                                       "createdAt": now() - timedelta(seconds=age_seconds)})
    assert client.post("/api/processContent", json=valid()).status_code == status


def test_a_hex_id_in_another_letter_case_is_the_same_upload(client, mongo, video):
    """A 24-hex id is stored as an ObjectId, which ignores case: "64B7..." must
    meet "64b7..."'s running job (409), not start a second run beside it."""
    lower, upper = "64b7f0c2a1b2c3d4e5f60718", "64B7F0C2A1B2C3D4E5F60718"
    assert client.post("/api/processContent", json=valid(upload_id=lower)).status_code == 202
    again = client.post("/api/processContent", json=valid(upload_id=upper))
    assert again.status_code == 409 and again.json["code"] == "in_progress", again.json
    assert mongo.collections.jobs.count_documents({}) == 1
    status = client.get(f"/api/processContent/{upper}", headers={"X-Auth-Key": AUTH_KEY})
    assert status.json["upload_id"] == lower, status.json
    forced = client.post("/api/processContent", json=valid(upload_id=upper, force_write=1))
    assert forced.status_code == 202 and forced.json["upload_id"] == lower
    assert [job["_id"] for job in mongo.collections.jobs.find()] == [f"processContent:{lower}"]
    assert {event["stream"] for event in mongo.collections.outbox.find()} <= {lower}
