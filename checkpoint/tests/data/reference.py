"""Prints the reference values the fixture tests compare against.

Independent of the Rust reader: tensors are loaded by torch (the YOLOv7 classes replaced by
empty nn.Module subclasses, so no official code runs) and cross-checked against the raw
storage bytes read with zipfile + struct.

Usage: python reference.py <fixtures dir> [files...]
"""

import struct
import sys
import types
import zipfile

import torch
import torch.nn as nn


class _Stubs(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (nn.Module,), {"__module__": self.__name__, "fuseforward": lambda self, x: x})
        setattr(self, name, cls)
        return cls


class _Np:
    def __init__(self, *args):
        self.args = args

    def __setstate__(self, state):
        self.state = state


for name in ["models", "models.common", "models.yolo", "models.experimental"]:
    sys.modules[name] = _Stubs(name)
for name in ["numpy", "numpy.core", "numpy.core.multiarray", "numpy._core", "numpy._core.multiarray"]:
    module = types.ModuleType(name)
    module._reconstruct = module.scalar = lambda *a: _Np(*a)
    module.ndarray = module.dtype = _Np
    sys.modules[name] = module

RAW = {torch.float16: "H", torch.bfloat16: "H", torch.float32: "I", torch.float64: "Q"}


def raw_bits_sum(path, tensor):
    """Sum of the raw element bit patterns, read from the archive with zipfile + struct."""
    storage = tensor.untyped_storage()
    key = None
    with zipfile.ZipFile(path) as z:
        # Find the storage entry holding exactly these bytes.
        data = bytes(storage.cpu())
        for info in z.infolist():
            if "/data/" in info.filename and info.file_size == len(data) and z.read(info) == data:
                key = info.filename
                raw = z.read(info)
                break
    size = tensor.element_size()
    start = tensor.storage_offset() * size
    fmt = "<%d%s" % (tensor.numel(), RAW[tensor.dtype])
    assert tensor.is_contiguous()
    return key, sum(struct.unpack(fmt, raw[start:start + tensor.numel() * size]))


def main():
    root = sys.argv[1]
    files = sys.argv[2:] or ["yolov7-tiny", "yolov7-w25-c3", "yolov7-w6-w25-c3", "yolov7-deploy-w25-c3"]
    for name in files:
        path = f"{root}/{name}.pt"
        ck = torch.load(path, map_location="cpu", weights_only=False)
        model = ck.get("ema") or ck["model"]
        tensors = dict(model.named_parameters())
        tensors.update({k: v for k, v in model.named_buffers() if not k.endswith("num_batches_tracked")})
        n = len(model.model)
        head = f"model.{n - 1}"
        picks = [[k for k in tensors if k.endswith("conv.weight")][0], f"{head}.m.0.weight", f"{head}.m.0.bias", f"{head}.anchor_grid"]
        picks += [k for k in tensors if k.endswith("running_var")][5:6]
        picks += [k for k in tensors if k.endswith("ia.0.implicit")]
        print(f"// {name}")
        total = sum(float(t.double().sum()) for t in tensors.values())
        params = sum(t.numel() for t in model.parameters())
        print(f"    total_sum: {total!r}, params: {params}, tensors: {len(tensors)},")
        for k in picks:
            t = tensors[k].detach()
            flat = t.flatten().float()
            key, bits = raw_bits_sum(path, t)
            print(f"    (\"{k}\", {t.numel()}, {float(t.double().sum())!r}, [{float(flat[0])!r}, {float(flat[1])!r}, {float(flat[-1])!r}], {bits}), // {key}")


if __name__ == "__main__":
    main()
