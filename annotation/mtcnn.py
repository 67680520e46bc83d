"""MTCNN face detector in plain torch + numpy (no torchvision, no facenet_pytorch import).

The network definitions mirror facenet_pytorch 2.6.0 (same parameter names) so that the
pretrained state dicts shipped in that wheel (data/pnet.pt, rnet.pt, onet.pt) load as-is.
The cascade follows facenet_pytorch.models.utils.detect_face closely (including its
1-based crop convention) so results match the reference implementation.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.functional import interpolate

from annotation.torch_nms import batched_nms

Box = tuple[float, float, float, float, float]


# --------------------------------------------------------------------------- networks
class PNet(nn.Module):
    """Fully convolutional proposal net: 12x12 receptive field, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The weights were converted from Caffe (W/H-major flatten), hence permute(0,3,2,1).
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net on 48x48 crops: box regression, 5 landmarks, face prob."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


# --------------------------------------------------------------------------- box helpers
def _bbreg(boxes: torch.Tensor, reg: torch.Tensor, plus_one: bool = True) -> torch.Tensor:
    """Apply regression offsets (fractions of box size) to columns 0..3.

    The reference uses width = x2-x1 after PNet but x2-x1+1 after RNet/ONet; keep both.
    """
    w = boxes[:, 2] - boxes[:, 0] + plus_one
    h = boxes[:, 3] - boxes[:, 1] + plus_one
    out = boxes.clone()
    out[:, :4] = boxes[:, :4] + reg * torch.stack([w, h, w, h], dim=1)
    return out


def _rerec(boxes: torch.Tensor) -> torch.Tensor:
    """Make boxes square (side = max(w, h)) around the same centre: nets expect squares."""
    out = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _crop_resize(imgs: torch.Tensor, boxes: torch.Tensor, inds: torch.Tensor,
                 size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop boxes (1-based inclusive, clipped to the image like the reference) and resize.

    Returns normalised crops for the valid boxes and a mask of boxes that yielded a
    non-empty crop (the reference drops empty crops without dropping the box, which
    misaligns scores and boxes; we return the mask so callers filter consistently).
    Crops are grouped by (h, w) so each group is resized by ONE adaptive_avg_pool2d
    call (== interpolate mode="area", identical to per-crop calls): ~450 candidate crops
    per 720p frame made per-crop calls a top cost in profiles.
    """
    h, w = imgs.shape[2:]
    b = boxes[:, :4].trunc().int()
    x, y = b[:, 0].clamp(min=1).tolist(), b[:, 1].clamp(min=1).tolist()
    ex, ey = b[:, 2].clamp(max=w).tolist(), b[:, 3].clamp(max=h).tolist()
    groups: dict[tuple[int, int], list[int]] = {}
    ok = []
    for j in range(len(x)):
        valid = ey[j] > y[j] - 1 and ex[j] > x[j] - 1
        ok.append(valid)
        if valid:
            groups.setdefault((ey[j] - y[j] + 1, ex[j] - x[j] + 1), []).append(j)
    mask = torch.tensor(ok, dtype=torch.bool, device=imgs.device)
    out = imgs.new_zeros((len(x), 3, size, size))
    ks = inds.tolist()
    for members in groups.values():
        crops = torch.stack([imgs[ks[j], :, y[j] - 1:ey[j], x[j] - 1:ex[j]] for j in members])
        out[members] = torch.nn.functional.adaptive_avg_pool2d(crops, (size, size))
    return (out[mask] - 127.5) * 0.0078125, mask


# --------------------------------------------------------------------------- detector
class MTCNNDetector:
    """Three-stage MTCNN cascade. `detect` takes a list of same-sized RGB uint8 frames."""

    def __init__(self, weights_dir: str, device: str = "cpu", min_face_size: int = 20,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709) -> None:
        self.device = torch.device(device)
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.factor = factor
        self.pnet_batch = 1  # frames per PNet call (see _stage1)
        self.crop_batch = 256  # crops per RNet/ONet call: bounded memory, cache friendly
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for name, net in (("pnet", self.pnet), ("rnet", self.rnet), ("onet", self.onet)):
            # weights_only=True: the files are plain state dicts; avoids unpickling code.
            sd = torch.load(os.path.join(weights_dir, f"{name}.pt"), map_location="cpu",
                            weights_only=True)
            net.load_state_dict(sd)
            net.to(self.device).eval()

    def _scales(self, h: int, w: int) -> list[float]:
        """Pyramid scales so that min_face_size maps to PNet's 12 px window."""
        m = 12.0 / self.min_face_size
        minl = min(h, w) * m
        scales = []
        while minl >= 12:
            scales.append(m)
            m *= self.factor
            minl *= self.factor
        return scales

    def _pnet_scale(self, imgs: torch.Tensor, scale: float
                    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """PNet on one pyramid level -> per-level-NMSed boxes [N, 9] and image indices."""
        h, w = imgs.shape[2:]
        im = interpolate(imgs, size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
        reg, probs = self.pnet((im - 127.5) * 0.0078125)
        mask = probs[:, 1] >= self.thresholds[0]
        nz = mask.nonzero()
        if nz.numel() == 0:
            return None
        inds = nz[:, 0]
        cell = nz[:, 1:].to(imgs.dtype).flip(1)  # (x, y) grid cell
        q1 = ((2 * cell + 1) / scale).floor()  # stride 2, cell size 12
        q2 = ((2 * cell + 12) / scale).floor()
        rg = reg.permute(0, 2, 3, 1)[mask]
        boxes = torch.cat([q1, q2, probs[:, 1][mask].unsqueeze(1), rg], dim=1)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.5)
        return boxes[keep], inds[keep]

    def _stage1(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PNet over the pyramid -> square candidate boxes [N,5] and image indices.

        PNet runs on `pnet_batch` frames at a time (default 1): on CPU a batch of 720p
        pyramids blows the caches and measured *slower* than frame-by-frame.
        """
        h, w = imgs.shape[2:]
        all_boxes, all_inds = [], []
        for k in range(0, len(imgs), self.pnet_batch):
            for scale in self._scales(h, w):
                res = self._pnet_scale(imgs[k:k + self.pnet_batch], scale)
                if res is not None:
                    all_boxes.append(res[0])
                    all_inds.append(res[1] + k)
        if not all_boxes:
            return imgs.new_zeros((0, 5)), torch.zeros(0, dtype=torch.long, device=imgs.device)
        boxes, inds = torch.cat(all_boxes), torch.cat(all_inds)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
        boxes, inds = boxes[keep], inds[keep]
        reg = _bbreg(boxes[:, :4], boxes[:, 5:9], plus_one=False)
        return _rerec(torch.cat([reg, boxes[:, 4:5]], dim=1)), inds

    def _chunked(self, net: nn.Module, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = [net(crops[i:i + self.crop_batch]) for i in range(0, len(crops), self.crop_batch)]
        return tuple(torch.cat(o) for o in zip(*outs, strict=True))

    def _stage2(self, imgs: torch.Tensor, boxes: torch.Tensor,
                inds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RNet refinement on 24x24 crops."""
        crops, ok = _crop_resize(imgs, boxes, inds, 24)
        boxes, inds = boxes[ok], inds[ok]
        if len(boxes) == 0:
            return boxes, inds
        reg, probs = self._chunked(self.rnet, crops)
        score = probs[:, 1]
        p = score > self.thresholds[1]
        boxes = torch.cat([boxes[p, :4], score[p, None]], dim=1)
        inds, reg = inds[p], reg[p]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
        return _rerec(_bbreg(boxes[keep], reg[keep])), inds[keep]

    def _stage3(self, imgs: torch.Tensor, boxes: torch.Tensor, inds: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ONet: final boxes [N,5], landmarks [N,5,2], image indices."""
        crops, ok = _crop_resize(imgs, boxes, inds, 48)
        boxes, inds = boxes[ok], inds[ok]
        if len(boxes) == 0:
            return boxes, imgs.new_zeros((0, 5, 2)), inds
        reg, pts, probs = self._chunked(self.onet, crops)
        score = probs[:, 1]
        p = score > self.thresholds[2]
        boxes = torch.cat([boxes[p, :4], score[p, None]], dim=1)
        inds, reg, pts = inds[p], reg[p], pts[p]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        px = bw * pts[:, :5] + boxes[:, 0:1] - 1
        py = bh * pts[:, 5:] + boxes[:, 1:2] - 1
        boxes = _bbreg(boxes, reg)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7, method="min")
        return boxes[keep], torch.stack([px, py], dim=2)[keep], inds[keep]

    @torch.inference_mode()
    def detect_with_landmarks(self, images: list[np.ndarray]
                              ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image: (boxes [N,5] x1,y1,x2,y2,score clipped to frame, landmarks [N,5,2])."""
        if not images:
            return []
        if any(im.shape != images[0].shape for im in images):
            raise ValueError("all images in a batch must have the same shape")
        imgs = torch.from_numpy(np.stack(images)).to(self.device)
        imgs = imgs.permute(0, 3, 1, 2).float()  # replaces torchvision to_tensor (no /255)
        h, w = imgs.shape[2:]
        boxes, inds = self._stage1(imgs)
        if len(boxes):
            boxes, inds = self._stage2(imgs, boxes, inds)
        pts = imgs.new_zeros((0, 5, 2))
        if len(boxes):
            boxes, pts, inds = self._stage3(imgs, boxes, inds)
        boxes = boxes.cpu().numpy()
        pts, inds = pts.cpu().numpy(), inds.cpu().numpy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return [(boxes[inds == i], pts[inds == i]) for i in range(len(images))]

    def detect(self, images: list[np.ndarray]) -> list[list[Box]]:
        """Per image, a list of (x1, y1, x2, y2, score) in frame pixels, best first."""
        return [[tuple(float(v) for v in row) for row in b]
                for b, _ in self.detect_with_landmarks(images)]


def default_weights_dir(folder: str | os.PathLike | None = None) -> str:
    """Where the three MTCNN weight files are.

    ``folder`` (the version's own folder, ``models/mtcnn``) when they are there:
    install.sh unpacks them there from the facenet-pytorch wheel, which it no
    longer installs (its metadata pins torch<2.3, a conflict pip reports).
    Otherwise facenet_pytorch/data of an installed facenet-pytorch (installs
    made before that), located without importing it (it needs torchvision).
    """
    if folder is not None and all(os.path.isfile(os.path.join(folder, f"{name}.pt"))
                                  for name in ("pnet", "rnet", "onet")):
        return os.fspath(folder)
    import importlib.util
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"MTCNN weights not found in {folder or 'models/mtcnn'}: "
                                "run ./install.sh (it unpacks them from the "
                                "facenet-pytorch 2.6.0 wheel)")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")
