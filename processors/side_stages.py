"""The pipeline's side stages (processors/pipeline.py): each gets every sampled
frame from the decoder and reports per task, so the encoder can hand a task on
only once its JPEGs, boxes and shot decisions are done too."""
from __future__ import annotations

import queue
from collections import deque
from typing import TYPE_CHECKING

from processors.frame_ops import encode_jpeg, normalize
from processors.pipeline_run import END, Run, Sample
from processors.source import SourceInfo

if TYPE_CHECKING:
    from processors.pipeline import OutputLayout, PipelineSettings
    from processors.shots import ShotDetector


def warm_up(run: Run, shots_q: queue.Queue, behind: deque, info: SourceInfo,
            task: int) -> bool:
    """Hand the shot detector the frames before the next one it decides on (the
    same pixels one pass gives it: normalised); False when the run stopped."""
    while behind:
        item = behind.popleft()
        frame = normalize(item.frame, info.rotation, info.width, info.height)
        if not run.put(shots_q, Sample(-1, task, item.index, item.timestamp, frame,
                                       warmup=True)):
            return False
    return True


def jpeg_stage(run: Run, settings: PipelineSettings, layout: OutputLayout,
               jpeg_q: queue.Queue) -> None:
    first_sample: dict[int, int] = {}
    while True:
        work = run.get(jpeg_q)
        if work is END:
            return
        start = first_sample.setdefault(work.task, work.sample)
        path = layout.frame_path(work.task, work.sample - start + 1)
        path.parent.mkdir(exist_ok=True)  # not parents: see pipeline.run_pipeline
        path.write_bytes(encode_jpeg(work.frame, settings.jpeg_quality))
        run.mark_done("jpeg", work.task)
        run.moves += 1


def annotate_stage(run: Run, settings: PipelineSettings, layout: OutputLayout,
                   annotate_q: queue.Queue) -> None:
    """Batches sampled frames for the detector; a batch is cut short when no frame
    is waiting, so the model never idles while a full batch gathers."""
    ended = False
    while not ended:
        batch = []
        work = run.get(annotate_q)
        while work is not END:
            batch.append(work)
            if len(batch) >= settings.annotate_batch:
                break
            try:
                work = annotate_q.get_nowait()
            except queue.Empty:
                break
        ended = work is END
        if not batch:
            continue
        found = settings.annotate([w.frame.to_ndarray(format="rgb24") for w in batch])
        with run.cond:
            for w, boxes in zip(batch, found):
                run.boxes[w.sample] = boxes
        for w in batch:
            run.mark_done("annotate", w.task)
        run.moves += 1


def shots_stage(detector: ShotDetector, run: Run, settings: PipelineSettings,
                layout: OutputLayout, shots_q: queue.Queue) -> None:
    """Shot boundaries over the sampled frames, in order (the detector decides
    each frame at once). A warm-up frame is only looked back on: its own result
    is the business of the task that holds it."""
    while True:
        work = run.get(shots_q)
        if work is END:
            return
        cuts = detector.push(work.source_index, work.frame)
        if work.warmup:
            continue
        if cuts:
            with run.cond:
                run.cuts.update(cuts)
        run.mark_done("shots", work.task)
        run.moves += 1
