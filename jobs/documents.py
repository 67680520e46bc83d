"""The AnnotationTask and AnnotationFrame documents a run stages, and their boxes."""
from __future__ import annotations

from job_states import RequestType
from job_types import ContentParams
from mongo_manager import DocumentId, new_id, now, object_id_from, to_id
from naming import auto_box_source, task_frames_folder, task_name
from processors.pipeline import TaskOutput
from processors.source import SourceInfo
from storage.contents import RunPaths


def box_documents(found: list, version: int) -> list[dict]:
    """Detections as AnnotationFrame boxes: x, y top-left, w, h in clip pixels."""
    return [{"id": new_id(), "label": d.label, "x": round(d.x, 2), "y": round(d.y, 2),
             "w": round(d.w, 2), "h": round(d.h, 2), "confidence": round(d.score, 4),
             "source": auto_box_source(version)} for d in found]


def task_object_id(run_id: str, number: int) -> DocumentId:
    """Deterministic per run and task, so a resumed run finds its own leftovers."""
    return object_id_from(f"{run_id}:{number}")


def build_task(out: TaskOutput, info: SourceInfo, params: ContentParams, paths: RunPaths,
               run_id: str) -> tuple[dict, list[dict]]:
    """The AnnotationTask and AnnotationFrame documents of one finished task."""
    task_id = task_object_id(run_id, out.number)
    label = out.label or str(out.number)
    name = task_name(label, info.name)
    version = params.auto_anno_version \
        if params.request_type == RequestType.CUT_AND_ANNOTATE else 0
    frames = out.frames
    task = {
        "_id": task_id, "projectId": to_id(params.project_id),
        "uploadId": to_id(params.upload_id), "taskName": name, "videoName": info.name,
        "videoPath": str(paths.clips / out.clip_path.name),
        "frameStart": frames[0].source_index, "frameEnd": frames[-1].source_index,
        "frameStartTime": frames[0].timestamp, "frameCount": len(frames),
        "original_frames": [f.source_index for f in frames], "frameRate": params.frame_rate,
        "Originalframerate": info.fps, "videoResolutionWidth": info.width,
        "videoResolutionHeight": info.height, "videoDuration": info.duration,
        "taskStatus": 0, "auditStatus": 0, "AutoAnnotationVersion": version,
        "datasetVersions": [], "createdAt": now(),
    }
    frame_docs = []
    for f in frames:
        boxes = box_documents(f.boxes or [], version)
        frame_docs.append({
            "taskId": task_id, "frameId": f.frame_id, "sourceFrame": f.source_index,
            "timestamp": f.timestamp,
            "imagePath": str(paths.frames / task_frames_folder(label) / f.image_path.name)
            if f.image_path else None,
            "boxes": boxes, "isEmpty": not boxes, "isUserAnnotated": False})
    return task, frame_docs
