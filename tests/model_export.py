"""Export a single-input/single-output nn.Module to TorchScript, torch.export (.pt2) and ONNX,
the way a user exports a model before registering it as a version. (Loading is the
service's own code: annotation/runtimes.py.)

Findings encoded here (torch 2.13, onnx 1.23, onnxruntime 1.31, onnxscript 0.7):
* torch.onnx.export defaults to dynamo=True (torch.export-based) which needs `onnxscript`
  and, by default, writes weights to a side file `<name>.onnx.data` (external_data=True);
  we pass external_data=False so a model is one self-contained file.
* The legacy TorchScript-based exporter still works with dynamo=False (DeprecationWarning).
* Dynamic batch: torch.export/dynamo-ONNX need an explicit Dim for dim 0 and specialise a
  size-1 example dim to 1, so we trace with a batch-2 example. TorchScript traces keep
  batch symbolic as long as the code only uses shapes via tensor ops.
"""
from __future__ import annotations

import warnings

import torch

INPUT_NAME, OUTPUT_NAME = "images", "output0"  # Ultralytics' names, so tools find them


def _example(example: torch.Tensor, dynamic_batch: bool) -> torch.Tensor:
    """Use a batch of 2 for dynamic exports: a size-1 dim would be specialised to 1.

    Always a fresh zero tensor: torch.export.save stores the example inputs inside the
    .pt2 (data/sample_inputs), and a *view* serialises its whole base storage (a view of a
    50-image batch made a 2.7 MB archive instead of 0.3 MB) -- and could leak user frames.
    """
    n = 2 if dynamic_batch and example.shape[0] == 1 else example.shape[0]
    return torch.zeros((n, *example.shape[1:]), dtype=example.dtype)


# --------------------------------------------------------------------------- TorchScript
def export_torchscript(module: torch.nn.Module, example: torch.Tensor, path: str) -> str:
    """torch.jit.trace + save. Trace (not script) because our wrappers use python control
    flow on static shapes, which trace freezes; torch.jit is deprecated but still works."""
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning on the static top-K size + deprecation
        traced = torch.jit.trace(module, example)
    traced.save(path)
    return path


# --------------------------------------------------------------------------- torch.export
def export_pt2(module: torch.nn.Module, example: torch.Tensor, path: str,
               dynamic_batch: bool = True) -> str:
    """torch.export.export + torch.export.save (.pt2 archive)."""
    module.eval()
    ex = _example(example, dynamic_batch)
    shapes = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic_batch else None
    ep = torch.export.export(module, (ex,), dynamic_shapes=shapes)
    torch.export.save(ep, path)
    return path


# --------------------------------------------------------------------------- ONNX
def export_onnx(module: torch.nn.Module, example: torch.Tensor, path: str,
                dynamic_batch: bool = True, dynamo: bool = True,
                opset: int | None = None) -> str:
    """torch.onnx.export with either the dynamo (default) or the legacy exporter."""
    module.eval()
    ex = _example(example, dynamic_batch)
    kw: dict = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamo=dynamo)
    if opset is not None:
        kw["opset_version"] = opset
    if dynamo:
        kw["external_data"] = False  # else weights land in a separate <path>.data file
        if dynamic_batch:
            kw["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
    elif dynamic_batch:
        kw["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy exporter DeprecationWarning / TracerWarning
        torch.onnx.export(module, (ex,), path, **kw)
    return path
