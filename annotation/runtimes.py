"""Load exported models (TorchScript, torch.export, ONNX) as one kind of callable.

A runner takes a float32 NCHW batch (numpy) and returns the model's output as
numpy. Models exported with a fixed batch size are run chunk by chunk.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from annotation.manifest import ModelManifest

Runner = Callable[[np.ndarray], np.ndarray]


def load_runner(manifest: ModelManifest, device: str, threads: int) -> Runner:
    path = str(manifest.weights_path)
    if manifest.format == "onnx":
        return _onnx(path, device, threads)
    import torch
    torch.set_num_threads(threads)
    if manifest.format == "torchscript":
        module = torch.jit.load(path, map_location=device).eval()
    else:  # torch_export; the loaded GraphModule has no .eval(): it was exported in eval mode
        module = torch.export.load(path).module().to(device)
    return _FallbackBatch(_torch_runner(module, device))


def _torch_runner(module, device: str) -> Runner:
    import torch

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(batch).to(device))
        if isinstance(out, (tuple, list)):  # YOLO exports may add auxiliary outputs
            out = out[0]
        return out.float().cpu().numpy()
    return run


class _FallbackBatch:
    """Runs whole batches; if the model refuses one (exported with a fixed batch
    of 1, a guard fails), runs frame by frame from then on."""

    def __init__(self, run: Runner) -> None:
        self.run = run
        self.single = False

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if not self.single and len(batch) > 1:
            try:
                return self.run(batch)
            except (RuntimeError, AssertionError):
                self.single = True
        return np.concatenate([self.run(batch[i:i + 1]) for i in range(len(batch))])


def _onnx(path: str, device: str, threads: int) -> Runner:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(path, options, providers=providers)
    spec = session.get_inputs()[0]
    fixed = spec.shape[0] if isinstance(spec.shape[0], int) else None

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {spec.name: batch})[0]

    if fixed is None:
        return run
    return lambda batch: _in_chunks(run, batch, fixed)


def _in_chunks(run: Runner, batch: np.ndarray, size: int) -> np.ndarray:
    """A fixed-batch model: chunks of ``size``, the last zero-padded and trimmed."""
    outs = []
    for start in range(0, len(batch), size):
        chunk = batch[start:start + size]
        n = len(chunk)
        if n < size:
            chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), chunk.dtype)])
        outs.append(run(chunk)[:n])
    return np.concatenate(outs)
