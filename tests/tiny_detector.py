"""A tiny, trainable-in-seconds single-class detector used to exercise export/import paths.

Task: find one bright square on a noisy background (class 0 = "square").
Model: 4 strided convs -> a stride-8 grid; each cell predicts (dx, dy, w, h, class logits),
i.e. an anchor-free YOLOv8-style head (no separate objectness: class score == confidence).

Two export layouts (both from `ExportWrapper`):
  "decoded": [N, K, 6]      = x1, y1, x2, y2, score, class  (top-K cells, no NMS, input px)
  "yolov8":  [N, 4 + C, A]  = cx, cy, w, h (input px) then per-class sigmoid scores,
             A = (H/8)*(W/8) grid cells, row-major -- same layout as an Ultralytics export.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

import numpy as np
import torch
from torch import nn

IMG = 64
STRIDE = 8
MIN_SIDE, MAX_SIDE = 10, 32


# --------------------------------------------------------------------------- data
def make_batch(n: int, gen: torch.Generator, img: int = IMG) -> tuple[torch.Tensor, torch.Tensor]:
    """n images [n,3,img,img] in [0,1] and GT boxes [n,4] (x1,y1,x2,y2, pixel edges)."""
    x = torch.rand(n, 3, img, img, generator=gen) * 0.5  # noise background
    side = torch.randint(MIN_SIDE, MAX_SIDE + 1, (n,), generator=gen)
    x1 = (torch.rand(n, generator=gen) * (img - side + 1)).long()
    y1 = (torch.rand(n, generator=gen) * (img - side + 1)).long()
    bright = 0.7 + 0.3 * torch.rand(n, 3, generator=gen)
    for i in range(n):  # tiny loop; n <= a few hundred
        s, a, b = int(side[i]), int(x1[i]), int(y1[i])
        x[i, :, b:b + s, a:a + s] = bright[i, :, None, None]
    boxes = torch.stack([x1, y1, x1 + side, y1 + side], dim=1).float()
    return x, boxes


# --------------------------------------------------------------------------- model
def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.SiLU())


class TinyDetector(nn.Module):
    """Outputs raw head maps [N, 4 + C, H/8, W/8]; use `decode_grid` for boxes."""

    def __init__(self, num_classes: int = 1, width: int = 32) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = nn.Sequential(
            _conv(3, 16, 2), _conv(16, width, 2), _conv(width, width, 2),
            _conv(width, width, 1), _conv(width, width, 1))  # receptive field ~47 px
        self.head = nn.Conv2d(width, 4 + num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def decode_grid(raw: torch.Tensor, stride: int = STRIDE) -> tuple[torch.Tensor, torch.Tensor]:
    """raw [N,4+C,gh,gw] -> boxes cxcywh [N,A,4] in input px, class logits [N,A,C].

    Centre = (cell + sigmoid(d)) * stride keeps the centre inside the owning cell; size is
    sigmoid(.) * 4 * stride * 2 (max 64 px) -- bounded, so training cannot blow up.
    The grid comes from the tensor's own shape so tracing/export bake it in as constants.
    """
    n, ch, gh, gw = raw.shape
    raw = raw.flatten(2).transpose(1, 2)  # [N, A, 4+C], A row-major over (y, x)
    ys = torch.arange(gh, dtype=raw.dtype, device=raw.device)
    xs = torch.arange(gw, dtype=raw.dtype, device=raw.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # [A, 2]
    cxy = (grid + torch.sigmoid(raw[..., 0:2])) * stride
    wh = torch.sigmoid(raw[..., 2:4]) * (8 * stride)
    return torch.cat([cxy, wh], dim=-1), raw[..., 4:]


class ExportWrapper(nn.Module):
    """Single-tensor-output view of a TinyDetector in one of the two export layouts."""

    def __init__(self, model: TinyDetector, layout: str = "decoded", max_det: int = 10) -> None:
        super().__init__()
        if layout not in ("decoded", "yolov8"):
            raise ValueError(f"unknown layout {layout!r}")
        self.model, self.layout, self.max_det = model, layout, max_det
        self.eval()  # the wrapper's own flag too: exporters warn/trace BN in train mode otherwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boxes, logits = decode_grid(self.model(x))
        scores = torch.sigmoid(logits)
        if self.layout == "yolov8":
            return torch.cat([boxes, scores], dim=-1).transpose(1, 2)  # [N, 4+C, A]
        conf, cls = scores.max(dim=-1)  # [N, A]
        k = min(self.max_det, conf.shape[1])  # python int at trace time -> static K
        top, idx = conf.topk(k, dim=1)
        b = torch.gather(boxes, 1, idx.unsqueeze(-1).expand(-1, -1, 4))
        xyxy = torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], dim=-1)
        c = torch.gather(cls, 1, idx).to(x.dtype)
        return torch.cat([xyxy, top.unsqueeze(-1), c.unsqueeze(-1)], dim=-1)  # [N, K, 6]


# --------------------------------------------------------------------------- training
@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch intra-op threads (None = leave as is).

    Why: this model's ops are tiny, so a 2nd thread gains ~nothing, while on a busy
    2-core box OpenMP spin-waiting made 2-thread steps ~20x slower than 1-thread ones.
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _loss(raw: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """BCE on class score (positive = cell holding the GT centre) + L1 on that cell's box."""
    n, _, gh, gw = raw.shape
    boxes, logits = decode_grid(raw)
    cxcy = (gt[:, :2] + gt[:, 2:]) / 2
    cell = (cxcy / STRIDE).floor().clamp(max=gw - 1).long()
    pos = cell[:, 1] * gw + cell[:, 0]  # [N] positive anchor index
    target = torch.zeros_like(logits[..., 0])
    target[torch.arange(n), pos] = 1.0
    # pos_weight: one positive vs A-1 negatives per image would otherwise swamp it.
    cls_loss = nn.functional.binary_cross_entropy_with_logits(
        logits[..., 0], target, pos_weight=torch.tensor(float(gh * gw) / 4))
    pb = boxes[torch.arange(n), pos]
    tb = torch.cat([cxcy, gt[:, 2:] - gt[:, :2]], dim=1)
    return cls_loss + nn.functional.l1_loss(pb, tb) / STRIDE


def train(seed: int = 0, steps: int = 300, batch: int = 32, lr: float = 3e-3,
          verbose: bool = False, num_threads: int | None = 1) -> TinyDetector:
    """Train from scratch on synthetic squares; a few seconds on CPU. Returns eval() model."""
    with torch_threads(num_threads):
        return _train(seed, steps, batch, lr, verbose)


def _train(seed: int, steps: int, batch: int, lr: float, verbose: bool) -> TinyDetector:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = TinyDetector()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    t0 = time.perf_counter()
    for step in range(steps):
        x, gt = make_batch(batch, gen)
        loss = _loss(model(x), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if verbose and step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} t={time.perf_counter() - t0:.1f}s")
    return model.eval()


# --------------------------------------------------------------------------- evaluation
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of xyxy boxes a[n,4], b[n,4]."""
    w = (np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])).clip(0)
    h = (np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])).clip(0)
    inter = w * h
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter + 1e-9)


def top_box(out: np.ndarray, layout: str) -> np.ndarray:
    """Best-scoring xyxy box per image from either layout's output array."""
    if layout == "decoded":
        return out[:, 0, :4]  # already sorted by topk
    best = out[:, 4:].max(axis=1).argmax(axis=1)  # [N]
    cxcywh = out[np.arange(len(out)), :4, best]
    return np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2,
                           cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)


def heldout(n: int = 200, seed: int = 12345) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed held-out set, generated with a seed disjoint from training."""
    return make_batch(n, torch.Generator().manual_seed(seed))
