"""Pure-torch greedy NMS (no torchvision.ops), with the Caffe "+1" pixel-area convention
used by MTCNN. Exact greedy semantics, vectorised via a fixed-point on the suppression matrix.
"""
from __future__ import annotations

import torch


def _overlap(a: torch.Tensor, b: torch.Tensor, method: str) -> torch.Tensor:
    """Pairwise [M, N] IoU (or intersection / min-area) with the Caffe "+1" pixel convention.

    In-place ops on the [M, N] temporaries: this matrix is the hot spot of NMS, and
    fewer allocations halved its cost.
    """
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    inter = torch.minimum(a[:, None, 2], b[:, 2])
    inter.sub_(torch.maximum(a[:, None, 0], b[:, 0])).add_(1).clamp_(min=0)
    h = torch.minimum(a[:, None, 3], b[:, 3])
    h.sub_(torch.maximum(a[:, None, 1], b[:, 1])).add_(1).clamp_(min=0)
    inter.mul_(h)
    if method == "min":
        return inter.div_(torch.minimum(area_a[:, None], area_b))
    return inter.div_((area_a[:, None] + area_b).sub_(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
        method: str = "union", max_matrix: int = 8192) -> torch.Tensor:
    """Exact greedy NMS. Returns kept indices sorted by descending score.

    Instead of a python loop per kept box (which dominated runtime with the thousands of
    PNet proposals per 720p frame), solve the greedy recursion
        keep[i] = not any(keep[j] and overlap[j, i] > thr for j ranked before i)
    by fixed-point iteration on the N x N suppression matrix: once an iteration changes
    nothing, the (unique) greedy solution has been reached. It usually takes a handful of
    vectorised iterations. Above max_matrix boxes we fall back to the per-box loop to cap
    memory (N^2 bytes). method="min" divides by the smaller area (MTCNN's final stage).
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    b = boxes[order]
    if len(b) > max_matrix:
        return order[_nms_loop(b, iou_threshold, method)]
    # sup[j, i]: j (ranked before i) would suppress i. Built in row blocks to bound the
    # float temporaries; the bool matrix itself is N^2 bytes (16 MB at N = 4096).
    sup = torch.empty((len(b), len(b)), dtype=torch.bool, device=b.device)
    for r in range(0, len(b), 1024):
        torch.gt(_overlap(b[r:r + 1024], b, method), iou_threshold, out=sup[r:r + 1024])
    sup.triu_(diagonal=1)
    keep = torch.ones(len(b), dtype=torch.bool, device=b.device)
    for _ in range(len(b)):
        new = ~(sup & keep[:, None]).any(dim=0)
        if torch.equal(new, keep):
            break
        keep = new
    return order[keep]


def _nms_loop(b: torch.Tensor, iou_threshold: float, method: str) -> torch.Tensor:
    """Greedy NMS on score-sorted boxes, one iteration per kept box (low memory)."""
    idx = torch.arange(len(b), device=b.device)
    keep = []
    while idx.numel() > 0:
        keep.append(idx[0])
        ov = _overlap(b[idx[:1]], b[idx[1:]], method)[0]
        idx = idx[1:][ov <= iou_threshold]
    return torch.stack(keep)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                iou_threshold: float, method: str = "union") -> torch.Tensor:
    """NMS independently per group id (image index); result sorted by descending score.

    Runs one NMS per group rather than torchvision's coordinate-offset trick: the greedy
    loop costs O(kept * candidates), so a single NMS over a batch of B frames would be
    O(B^2) and made batching *slower* than frame-by-frame.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    keep = []
    for g in torch.unique(idxs).tolist():
        sel = (idxs == g).nonzero().squeeze(1)
        keep.append(sel[nms(boxes[sel], scores[sel], iou_threshold, method)])
    keep_t = torch.cat(keep)
    return keep_t[torch.argsort(scores[keep_t], descending=True, stable=True)]
