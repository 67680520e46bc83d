"""Dataset versions: YOLO and COCO exactly right, stable splits, S3 upload, bad input."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from browser import CHROMIUM, Chromium, image_widths, open_page, screenshot
from conftest import AUTH_KEY
from dataset_data import HEIGHT, WIDTH, box, make_task, make_tasks, make_version
from PIL import Image

from datasets.formats import assign_split
from datasets.spec import parse_splits
from exceptions import DatasetError
from intake import dataset_builds
from jobs.dataset import dataset_dir


def build_here(config, mongo, version_id: str) -> dict:
    """Build the version in this process, as the CLI does; returns its status."""
    assert dataset_builds.build_here(mongo, config, version_id)
    return dataset_builds.status(mongo, version_id)


def read_labels(root: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in root.glob("labels/*/*.txt")}


def test_yolo_lines_are_exact(config, mongo, contents):
    make_task(mongo, contents, "u1", 1, [
        [box("car", 16, 12, 32, 24), box("person", 0, 0, 8, 6)],
        [box("person", 60, 40, 10, 10)],  # sticks out of the 64x48 frame: clipped
        [box("dog", 1, 1, 5, 5)],  # not in the version's labels: skipped, counted
        []])
    version = make_version(mongo, splitCount=[{"type": "train", "percentage": 100}])
    state = build_here(config, mongo, version)
    assert state["status"] == 1, state
    labels = read_labels(dataset_dir(contents, version))
    assert labels == {
        "u1__task-1-clip__000001": "1 0.500000 0.500000 0.500000 0.500000\n"
                                   "0 0.062500 0.062500 0.125000 0.125000\n",
        "u1__task-1-clip__000002": "0 0.968750 0.916667 0.062500 0.166667\n",
        "u1__task-1-clip__000003": "",
        "u1__task-1-clip__000004": ""}
    assert state["counts"]["skippedBoxes"] == {"dog": 1}
    assert state["counts"]["splits"]["train"] == {"images": 4, "boxes": {"car": 1, "person": 2}}
    assert state["taskStatus"]["tasks"][0]["state"] == "complete"
    assert state["taskStatus"]["tasks"][0]["imageCount"] == 4
    data = yaml.safe_load((dataset_dir(contents, version) / "data.yaml").read_text())
    assert data["names"] == {0: "person", 1: "car"} and data["nc"] == 2
    # Ultralytics' reading: the root is the file's folder (no "path"), "val" is required.
    assert data["train"] == data["val"] == "images/train" and "path" not in data


def test_coco_is_valid(config, mongo, contents):
    for n in range(1, 6):
        make_task(mongo, contents, "u1", n, [[box("car", n, n, 20, 10), box("person", 50, 30,
                                                                            30, 30)]] * 4,
                  first_source=n * 100)
    version = make_version(mongo)
    assert build_here(config, mongo, version)["status"] == 1
    root = dataset_dir(contents, version)
    images_seen = 0
    for path in root.glob("annotations/*.json"):
        coco = json.loads(path.read_text())
        images = {image["id"]: image for image in coco["images"]}
        assert len(images) == len(coco["images"])
        ids = [a["id"] for a in coco["annotations"]]
        assert len(ids) == len(set(ids))
        categories = {c["id"]: c["name"] for c in coco["categories"]}
        assert categories == {1: "person", 2: "car"}
        for ann in coco["annotations"]:
            image = images[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"]
            assert ann["area"] == pytest.approx(w * h, abs=0.01) and ann["iscrowd"] == 0
            assert ann["category_id"] in categories
        for image in images.values():
            with Image.open(root / image["file_name"]) as picture:
                assert picture.size == (image["width"], image["height"]) == (WIDTH, HEIGHT)
        images_seen += len(images)
    assert images_seen == 20


def test_splits_are_stable_across_reruns_and_new_tasks(config, mongo, contents):
    make_tasks(mongo, contents, "u1", 6)
    first = make_version(mongo)
    build_here(config, mongo, first)
    before = {p.name: p.parent.name for p in dataset_dir(contents, first).glob("images/*/*")}
    assert set(before.values()) == {"train", "val", "test"}  # 60 frames: all splits used
    build_here(config, mongo, first)
    make_tasks(mongo, contents, "u2", 4)
    second = make_version(mongo, name="v2")
    build_here(config, mongo, second)
    after = {p.name: p.parent.name for p in dataset_dir(contents, first).glob("images/*/*")}
    grown = {p.name: p.parent.name for p in dataset_dir(contents, second).glob("images/*/*")}
    assert after == before
    assert {name: grown[name] for name in before} == before and len(grown) == 100


def test_same_video_name_in_two_uploads_never_collides(config, mongo, contents):
    make_tasks(mongo, contents, "u1", 2, video_name="street")
    make_tasks(mongo, contents, "u2", 2, video_name="street")
    version = make_version(mongo)
    state = build_here(config, mongo, version)
    images = list(dataset_dir(contents, version).glob("images/*/*.jpg"))
    assert len(images) == 40 == state["counts"]["images"]
    assert {p.name.split("__")[0] for p in images} == {"u1", "u2"}


@pytest.mark.parametrize("statuses, expected", [
    (None, {1, 5}),  # default: Accepted and Completed
    ([2], {2}),
    ([0, 1, 3], {0, 1, 3}),
])
def test_audit_filter(config, mongo, contents, statuses, expected):
    for audit in range(6):
        make_task(mongo, contents, f"u{audit}", 1, [[box("car", 1, 1, 9, 9)]], audit=audit)
    version = make_version(mongo, **({"auditStatuses": statuses} if statuses else {}))
    build_here(config, mongo, version)
    uploads = {p.name.split("__")[0] for p in dataset_dir(contents, version).glob("images/*/*")}
    assert uploads == {f"u{audit}" for audit in expected}


def test_task_list_selects_tasks_of_any_project(config, mongo, contents):
    wanted = make_task(mongo, contents, "u9", 1, [[]], project_id="other")
    make_tasks(mongo, contents, "u1", 1)
    version = make_version(mongo, projectIds=[], taskList=[str(wanted)])
    state = build_here(config, mongo, version)
    assert [t["task"] for t in state["taskStatus"]["tasks"]] == [str(wanted)]
    assert mongo.collections.tasks.find_one({"_id": wanted})["datasetVersions"]


def test_upload_to_s3_then_rerun_sends_nothing(make_config, mongo, contents, s3_env, s3_server):
    config = make_config(**s3_env)
    make_tasks(mongo, contents, "u1", 3)
    version = make_version(mongo, s3Prefix="exports/v1")
    state = build_here(config, mongo, version)
    assert state["status"] == 1, state
    objects = s3_server.objects(s3_env["S3_BUCKET"], "exports/v1/")
    root = dataset_dir(contents, version)
    local = {p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() and not p.name.startswith(".")}
    assert {key.removeprefix("exports/v1/") for key in objects} == local
    manifest = json.loads((root / "manifest.json").read_text())
    listed = {o["key"]: o["etag"] for o in manifest["objects"]}
    assert len(listed) == len(objects) - 1  # every object but the manifest itself
    assert all(objects[key]["ETag"].strip('"') == etag for key, etag in listed.items())
    assert state["uploadStats"]["sent"] == len(objects) and state["uploadStats"]["skipped"] == 0
    # The health report is one of the version's objects, locally and in the store.
    report = state["report"]
    assert report["s3Key"] == "exports/v1/report/index.html" and report["s3Key"] in objects
    page = Path(report["path"]).read_text()
    assert page.lower().startswith("<!doctype html>") and 'src="http' not in page
    assert report["images"] == len(read_labels(root)) == manifest["counts"]["images"]
    again = build_here(config, mongo, version)  # the same page: nothing to send
    assert again["uploadStats"]["sent"] == 0 and again["uploadStats"]["requests"] == 0
    assert again["uploadStats"]["skipped"] == len(objects)


def test_a_changed_label_is_sent_again(make_config, mongo, contents, s3_env):
    config = make_config(**s3_env)
    task = make_task(mongo, contents, "u1", 1, [[box("car", 1, 1, 9, 9)], []])
    version = make_version(mongo)
    build_here(config, mongo, version)
    mongo.collections.frames.update_one({"taskId": task, "frameId": 2},
                                        {"$set": {"boxes": [box("person", 2, 2, 8, 8)]}})
    state = build_here(config, mongo, version)
    # The label file, the COCO file of its split, the health report (its
    # counts changed), and the manifest.
    assert state["uploadStats"]["sent"] == 4, state["uploadStats"]


@pytest.mark.parametrize("fields, code", [
    ({"labels": []}, "no_labels"),
    ({"labels": ["a", "a"]}, "bad_labels"),
    ({"projectIds": ["nobody"]}, "no_matching_tasks"),
    ({"projectIds": [], "taskList": []}, "no_tasks"),
    ({"splitCount": [{"type": "train", "percentage": 60}]}, "bad_splits"),
    ({"splitCount": [{"type": "holdout", "percentage": 100}]}, "bad_splits"),
    ({"exportFormats": ["VOC"]}, "bad_formats"),
    ({"auditStatuses": [9]}, "bad_audit_statuses"),
    # Not lists (were internal_error: "'int' object is not iterable"), NaN (built):
    ({"projectIds": 5}, "bad_selection"),
    ({"taskList": 7}, "bad_selection"),
    ({"auditStatuses": 5}, "bad_audit_statuses"),
    ({"splitCount": [{"type": "train", "percentage": float("nan")},
                     {"type": "val", "percentage": 100}]}, "bad_splits"),
])
def test_bad_versions_end_in_error(config, mongo, contents, fields, code):
    make_tasks(mongo, contents, "u1", 1)
    version = make_version(mongo, **fields)
    state = build_here(config, mongo, version)
    assert state["status"] == 2 and state["error"]["code"] == code, state
    assert state["taskStatus"]["state"] == "error"


def test_missing_image_fails_its_task_only(config, mongo, contents):
    make_tasks(mongo, contents, "u1", 2)
    (contents / "frames" / "u1" / "task-2" / "3.jpg").unlink()
    version = make_version(mongo)
    state = build_here(config, mongo, version)
    assert state["status"] == 2 and state["error"]["code"] == "task_errors"
    tasks = state["taskStatus"]["tasks"]
    assert [t["state"] for t in tasks] == ["complete", "error"]
    assert "3.jpg" in tasks[1]["error"]
    assert not (dataset_dir(contents, version) / "manifest.json").exists()


@pytest.mark.parametrize("splits, message", [
    ([{"type": "train", "percentage": 50}, {"type": "train", "percentage": 50}], "distinct"),
    ([{"type": "val", "percentage": -1}, {"type": "train", "percentage": 101}], ">= 0"),
    ([{"type": "val", "percentage": "x"}], "number"),
    ("80/20", "distinct"),
])
def test_parse_splits_errors(splits, message):
    with pytest.raises(DatasetError, match=message):
        parse_splits(splits)


def test_split_shares_follow_the_percentages():
    splits = parse_splits([{"type": "test", "percentage": 10}, {"type": "train", "percentage": 70},
                           {"type": "val", "percentage": 20}])
    assert splits == (("train", 70.0), ("val", 20.0), ("test", 10.0))
    counts = Counter(assign_split(f"u:{i}", splits) for i in range(20000))
    assert abs(counts["train"] / 20000 - 0.7) < 0.015
    assert abs(counts["test"] / 20000 - 0.1) < 0.01


def test_api_build_and_status(client, mongo, contents, run_jobs):
    make_tasks(mongo, contents, "u1", 2)
    version = make_version(mongo)
    headers = {"X-Auth-Key": AUTH_KEY}
    answer = client.post(f"/api/datasets/{version}/build", headers=headers)
    assert answer.status_code == 202 and answer.json["status_url"] == f"/api/datasets/{version}"
    again = client.post(f"/api/datasets/{version}/build", headers=headers)
    assert again.status_code == 409 and again.json["code"] == "in_progress"
    assert run_jobs() == 1
    state = client.get(f"/api/datasets/{version}", headers=headers).json
    assert state["status"] == 1 and state["progress"] == 100
    assert [t["state"] for t in state["taskStatus"]["tasks"]] == ["complete", "complete"]


@pytest.mark.parametrize("method, path, headers, status", [
    ("post", "/api/datasets/000000000000000000000000/build", {"X-Auth-Key": AUTH_KEY}, 404),
    ("get", "/api/datasets/000000000000000000000000", {"X-Auth-Key": AUTH_KEY}, 404),
    ("post", "/api/datasets/000000000000000000000000/build", {}, 401),
    ("get", "/api/datasets/000000000000000000000000", {"X-Auth-Key": "wrong"}, 401),
])
def test_api_errors(client, method, path, headers, status):
    assert getattr(client, method)(path, headers=headers).status_code == status


def test_large_files_go_multipart_and_resume_by_etag(make_config, s3_env, s3_server, tmp_path):
    import os

    from storage.s3_store import S3Store, UploadItem, file_etag
    config = make_config(**s3_env, S3_PART_MB="5")
    big = tmp_path / "big.json"
    big.write_bytes(os.urandom(12 << 20))  # 3 parts of 5 MiB
    etag = file_etag(big, 5 << 20)
    assert etag.endswith("-3")
    store = S3Store(config.s3)
    store.start_listing("m")
    store.upload([UploadItem(big, "m/big.json", etag)], lambda item: None)
    assert store.stats.sent == 1 and store.stats.requests == 3  # one request per part
    listed = s3_server.objects(s3_env["S3_BUCKET"], "m/")
    assert listed["m/big.json"]["ETag"].strip('"') == etag
    again = S3Store(config.s3)
    again.start_listing("m")
    again.upload([UploadItem(big, "m/big.json", etag)], lambda item: None)
    assert again.stats.sent == 0 and again.stats.skipped == 1


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (install.sh dev)")
def test_a_browser_shows_the_health_report(config, mongo, contents, tmp_path):
    """The built version's report in headless Chromium: every plot and sample
    loads, no console error, and it shows the counts of the YOLO files."""
    for n in range(1, 5):
        make_task(mongo, contents, "u1", n, [
            [box("car", 4 + 3 * k, 6 + k, 20 + k, 12), box("person", 40 - k, 20, 8, 16 + k)]
            if k % 3 else [box("person", 10, 10 + k, 12, 20)] for k in range(12)])
    version = make_version(mongo)
    state = build_here(config, mongo, version)
    assert state["status"] == 1, state
    root = dataset_dir(contents, version)
    labels = read_labels(root)
    boxes = sum(len(text.splitlines()) for text in labels.values())
    with Chromium(tmp_path / "chromium") as browser:
        errors = open_page(browser, (root / "report" / "index.html").as_uri())
        widths = image_widths(browser)
        shown = browser.evaluate("document.body.innerText")
        shot = screenshot(browser, tmp_path / "dataset-report.png", max_height=2400)
    assert errors == []
    assert len(widths) >= 5 + 12 and all(w > 0 for _, w in widths), widths  # plots, samples
    assert f"{len(labels)} images, {boxes} boxes" in shown, shown[:400]
    assert shot.stat().st_size > 10000
