"""The order of a run's staged tasks, and each one's public number.

A staged task's ``number`` is its key (processors/task_split.py): its grid
cell with fixed tasks, its first sample + 1 when tasks follow shots, which a
segment can decide alone. Each staged task also records the key of the task
after it (``next``), so the tasks that follow the upload's first one without
a gap are known whichever process staged them; a task's public number (its
``task_number`` in events, what a caller counts) is its place in that chain.
"""
from __future__ import annotations


def chained(staged: list[dict]) -> list[dict]:
    """The tasks of ``staged`` (in key order) that follow the first without a gap."""
    chain: list[dict] = []
    expected = 1
    for doc in staged:
        if doc["number"] != expected:
            break
        chain.append(doc)
        expected = doc.get("next") or doc["number"] + 1
    return chain


def check_complete(staged: list[dict]) -> None:
    """Every task of a run to commit is staged: the chain holds them all."""
    chain = chained(staged)
    if len(chain) != len(staged):
        missing = chain[-1].get("next") if chain else 1
        raise RuntimeError(f"the run's staged tasks {[doc['number'] for doc in staged]} "
                           f"miss task {missing}")


def label(doc: dict) -> str:
    """What names a staged task's clip and frame folder ("3", "3.2")."""
    return doc.get("label") or str(doc["number"])


def left_out(staged: list[dict]) -> int:
    """Still frames the run's tasks left out (skip_still)."""
    return sum(doc.get("leftOut") or 0 for doc in staged)
