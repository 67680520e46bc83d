"""A video upload's shots, from the cuts its staged tasks recorded.

The pipeline reports, with each task, the source frames of the task where a
new shot starts (``TaskOutput.cuts``: what one pass over the whole video finds
there, whichever process cut the task: processors/shots.py, segment warm-up).
They are staged with the task (``cuts`` of its AnnotationTaskStaging
document), so a run resumed after a kill -9 still knows the cuts of the tasks
it skips, and the segments' cuts meet at the commit. From the staged tasks,
in number order, come the upload's ``shots`` and each task's ``shots`` (the
indices of the upload's shots it holds): a prefix of the tasks gives its
tasks the same indices as the whole, so a task published early keeps them.
"""
from __future__ import annotations

from processors.pipeline import TaskOutput


def task_cuts(out: TaskOutput) -> list[dict]:
    """A finished task's cuts as staged: ``{frame, time, before}`` (source frame,
    seconds, the sampled frame before it: where the shot before ends)."""
    times = {f.source_index: f.timestamp for f in out.frames}
    return [{"frame": cut, "time": times[cut], "before": before}
            for cut, before in zip(out.cuts, out.cut_ends)]


def cut_frames(staged: list[dict]) -> set[int]:
    """The source frames where a new shot starts, over ``staged`` tasks."""
    return {cut["frame"] for doc in staged for cut in doc.get("cuts") or ()}


def shot_starts(upload: dict | None) -> set[int]:
    """The cuts an upload recorded (its shots but the first): where tracks end."""
    return {shot["start"] for shot in ((upload or {}).get("shots") or [])[1:]}


class ShotPlan:
    """The upload's shots ``[{start, end, startTime}]`` (first and last sampled
    source frame of each, its start in seconds) and each task's shot indices,
    taken from staged tasks 1, 2, ... in order, each once: a progressive run
    adds the tasks it publishes as it goes rather than reading its whole
    prefix again at every publication."""

    def __init__(self) -> None:
        self.shots: list[dict] = []
        self.per_task: list[list[int]] = []

    def add(self, doc: dict) -> list[int]:
        """The next staged task: the indices of the shots it holds. A shot ends
        on its last sampled frame, even one left out as still (``before`` of
        the cut after it, ``lastSample`` of the task)."""
        task, shots = doc["task"], self.shots
        cuts = {cut["frame"]: cut for cut in doc.get("cuts") or ()}
        first = None
        for frame in task["original_frames"]:
            if not shots or frame in cuts:
                if shots and "before" in cuts.get(frame, {}):
                    shots[-1]["end"] = max(shots[-1]["end"], cuts[frame]["before"])
                shots.append({"start": frame, "end": frame, "startTime":
                              cuts[frame]["time"] if frame in cuts else task["frameStartTime"]})
            shots[-1]["end"] = frame
            if first is None:
                first = len(shots) - 1
        shots[-1]["end"] = max(shots[-1]["end"], doc.get("lastSample", -1))
        held = list(range(first if first is not None else len(shots) - 1, len(shots)))
        self.per_task.append(held)
        return held


def shot_plan(staged: list[dict]) -> tuple[list[dict], list[list[int]]]:
    """The shots and each task's shot indices of ``staged`` tasks 1, 2, ... (ShotPlan)."""
    plan = ShotPlan()
    for doc in staged:
        plan.add(doc)
    return plan.shots, plan.per_task
