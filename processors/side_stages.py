"""The pipeline's stages beside the encoder (processors/pipeline.py). The
split stage, when there is one, sits between the decoder and the others; the
side stages each get every frame the encoder gets and report per task, so the
encoder can hand a task on only once its JPEGs and boxes are done too."""
from __future__ import annotations

import queue
from collections import deque
from typing import TYPE_CHECKING

from processors.frame_ops import encode_jpeg, normalize
from processors.pipeline_run import END, Run, Sample
from processors.source import SourceInfo

if TYPE_CHECKING:
    from processors.pipeline import OutputLayout, PipelineSettings
    from processors.task_split import TaskSplitter


def warm_up(run: Run, split_q: queue.Queue, behind: deque, info: SourceInfo,
            task: int) -> bool:
    """Hand the shot detector the frames before the next one it decides on (the
    same pixels one pass gives it: normalised); False when the run stopped."""
    while behind:
        item = behind.popleft()
        frame = normalize(item.frame, info.rotation, info.width, info.height)
        if not run.put(split_q, Sample(-1, task, item.index, item.timestamp, frame,
                                       warmup=True)):
            return False
    return True


def jpeg_stage(run: Run, settings: PipelineSettings, layout: OutputLayout,
               jpeg_q: queue.Queue) -> None:
    while True:
        work = run.get(jpeg_q)
        if work is END:
            return
        path = layout.frame_path(work.label, work.frame_id)
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


def split_stage(splitter: TaskSplitter, skip: frozenset[int], outputs: list[queue.Queue],
                run: Run, split_q: queue.Queue) -> None:
    """Between the decoder and the other stages when shots or still frames
    matter: places each sampled frame (processors/task_split.py) and hands on
    those kept, of tasks not in ``skip`` (staged by an earlier, interrupted
    run: their frames still go through the shot detector). A warm-up frame is
    only looked back on."""
    try:
        while True:
            work = run.get(split_q)
            if work is END:
                splitter.end()
                return
            run.moves += 1
            if work.warmup:
                splitter.look(work.source_index, work.frame)
                continue
            placed = splitter.place(work.sample, work.source_index, work.frame)
            if placed is None or placed.task in skip:
                continue
            work.task, work.label, work.frame_id, work.new_shot, work.before = (
                placed.task, placed.label, placed.frame_id, placed.new_shot, placed.before)
            if not all(run.put(q, work) for q in outputs):
                return
    finally:
        for q in outputs:
            run.put(q, END)
