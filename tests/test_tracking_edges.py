"""Every auto box of a video upload carries a trackId (issue 17), whatever the
library's tracker makes of it: objects entering at every edge and corner, first
seen as a box clipped to no width or height, one-off boxes, a first sighting
partially outside the frame; through the whole-upload and the online
computations, and through the job path.
"""
from __future__ import annotations

import json

import pytest
import torch
from test_annotation import post_aa, run_all, square_video
from tracking_scene import ENTRIES, edge_scene

from annotation.tracking import OnlineTracks, TrackerSettings, assign_tracks
from config import load_config

SETTINGS = [TrackerSettings(), TrackerSettings(kind="bytetrack"),
            TrackerSettings(lost_seconds=0.1)]  # under one sample at 5 fps


@pytest.mark.parametrize("settings", SETTINGS, ids=["sort", "bytetrack", "sort-lost-0.1s"])
def test_every_box_entering_at_the_edges_gets_a_track(settings):
    frames, _ = edge_scene()
    ids = assign_tracks(frames, 5, settings)
    assert all(type(track) is int for row in ids for track in row), ids
    online = OnlineTracks(5, settings)
    done = [final for boxes in frames for final in online.push(boxes)] + online.finish()
    assert [final.ids for final in done] == ids
    # Numbered 1, 2, ... by first appearance (sample order, then box order).
    seen: list[int] = []
    for track in (track for row in ids for track in row):
        if track not in seen:
            seen.append(track)
    assert seen == list(range(1, len(seen) + 1))


@pytest.mark.parametrize("settings", SETTINGS, ids=["sort", "bytetrack", "sort-lost-0.1s"])
def test_an_object_entering_at_a_side_keeps_one_track_from_its_first_sighting(settings):
    """Its first box, clipped to no width or height, is linked to the object's
    track (SORT is given it 1 px wide): not a track of its own; nor is each box
    when tracks are lost after under one sample."""
    frames, objects = edge_scene()
    ids = assign_tracks(frames, 5, settings)
    for k, (label, _, _, _) in enumerate(ENTRIES[:4]):  # left, right, top, bottom
        tracks = [track for row, owners in zip(ids, objects)
                  for track, owner in zip(row, owners) if owner == k]
        assert len(tracks) == 16 - k and len(set(tracks)) == 1, (k, label, tracks)


def edge_model(folder):
    """A registered model version (TorchScript, decoded boxes) that finds the
    bright square of square_video, and a box 30-40 px left of it: past the
    frame's left edge (clipped to no width) while the square is near it, then
    an object entering there."""
    class Edge(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] in 0..1
            mask = x.amin(dim=1) > 0.7
            rows, cols = mask.any(dim=2), mask.any(dim=1)
            y0, x0 = rows.float().argmax(dim=1).float(), cols.float().argmax(dim=1).float()
            y1 = rows.shape[1] - rows.flip(1).float().argmax(dim=1).float()
            x1 = cols.shape[1] - cols.flip(1).float().argmax(dim=1).float()
            score = (mask.flatten(1).sum(dim=1) >= 30).float()
            zero = torch.zeros_like(score)
            return torch.stack([torch.stack([x0, y0, x1, y1, score, zero], dim=1),
                                torch.stack([x0 - 40, y0, x0 - 30, y1, score, zero], dim=1)],
                               dim=1)

    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.jit.trace(Edge(), torch.zeros(1, 3, 96, 128)).save(str(folder / "m.pt"))
    (folder / "model.json").write_text(json.dumps({
        "name": "edge", "labels": ["car"], "format": "torchscript", "weights": "m.pt",
        "output": "boxes", "input_size": [128, 96], "letterbox": False,
        "score_threshold": 0.5, "nms_threshold": 0.5}))
    return folder


def test_no_auto_box_of_an_upload_lacks_a_track_id(env, mongo, contents, tmp_path):
    """Request type 1 (tracks computed online as its tasks are published): the
    boxes clipped to no width at the left edge carry a trackId too, one track."""
    from app import create_app
    square_video(contents / "uploads" / "sq.mp4", 20)  # 2 task clips of 10 frames
    env = {**env, "ANNOTATION_VERSION_9": str(edge_model(tmp_path / "edge"))}
    assert post_aa(create_app(load_config(env=env)).test_client(),
                   auto_anno_version=9).status_code == 202
    run_all(env)
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1, upload.get("errorMessage")
    boxes = [box for task in mongo.frames.tasks_of("u1") for frame in mongo.frames.frames_of(task["_id"])
             for box in frame["boxes"] if box["source"] == "auto:v9"]
    assert len(boxes) == 40 and sum(box["w"] == 0 for box in boxes) >= 5
    assert [box for box in boxes if type(box.get("trackId")) is not int] == []
    assert {box["trackId"] for box in boxes} == {1, 2} and upload["tracks"] == {"car": 2}
