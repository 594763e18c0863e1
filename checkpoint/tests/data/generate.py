"""Regenerates the small checkpoints in this folder.

They are written by the official YOLOv7 model code (models/yolo.py, models/common.py), so
their pickles have exactly the shape real training checkpoints have, but from tiny custom
configurations that put every layer kind of the detection family into a few hundred KB.

Usage: python generate.py <path to a YOLOv7 checkout> [output dir]
Needs torch, numpy and pyyaml; the official code's other imports (cv2, pandas, torchvision,
...) are not used by model construction and are replaced by empty stand-ins.
"""

import importlib.abc
import importlib.machinery
import io
import os
import sys
import types
import zipfile
from copy import deepcopy

STUBBED = ("cv2", "pandas", "requests", "torchvision", "PIL", "matplotlib", "seaborn",
           "scipy", "tqdm", "thop", "wandb")


class _AnyMeta(type):
    """Classes whose every attribute is another such class: stand-ins for unused imports."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _AnyMeta(name, (object,), {})

    def __call__(cls, *args, **kwargs):
        return cls

    def __iter__(cls):
        return iter(())


class _Anything(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _AnyMeta(name, (object,), {})
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Anything(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def main():
    repo = os.path.abspath(sys.argv[1])
    out = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(__file__))
    sys.meta_path.insert(0, _StubFinder())
    sys.path.insert(0, repo)
    os.chdir(repo)

    import numpy as np
    import torch
    import torch.nn as nn
    import models.common as common
    from models.yolo import Model

    torch.manual_seed(7)

    def randomize(model):
        # Non-trivial BatchNorm statistics and implicit tensors, so fusing changes values.
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        return model.eval()

    def save(obj, name, **kwargs):
        torch.save(obj, os.path.join(out, name), **kwargs)

    def stripped(model):
        model = deepcopy(model).half()
        for p in model.parameters():
            p.requires_grad = False
        return {"model": model, "optimizer": None, "training_results": None, "epoch": -1,
                "ema": None, "updates": None, "wandb_id": None}

    anchors3 = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
    anchors4 = [[19, 27, 44, 40, 38, 94], [96, 68, 86, 152, 180, 137],
                [140, 301, 303, 264, 238, 542], [436, 615, 739, 380, 925, 792]]

    # Every layer kind of the IDetect models, with every activation the official Conv takes.
    kinds = {
        "nc": 2, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": anchors3,
        "backbone": [
            [-1, 1, "Conv", [8, 3, 2]],
            [-1, 1, "Conv", [8, 3, 1, None, 1, "nn.LeakyReLU(0.1)"]],
            [-1, 1, "Conv", [8, 1, 1, None, 1, "nn.ReLU()"]],
            [-1, 1, "Conv", [8, 1, 1, None, 1, "nn.Hardswish()"]],
            [-1, 1, "Conv", [8, 1, 1, None, 1, "nn.Sigmoid()"]],
            [-1, 1, "Conv", [8, 1, 1, None, 1, "nn.Tanh()"]],
            [-1, 1, "Conv", [8, 1, 1, None, 1, "nn.Mish()"]],
            [-1, 1, "Conv", [8, 1, 1, None, 1, False]],
            [-1, 1, "MP", []],
            [-1, 1, "Conv", [16, 3, 2]],  # 9 P3/8
            [-1, 1, "DownC", [16]],  # 10 P4/16
            [-1, 1, "Conv", [16, 1, 1]],
            [[-1, -2], 1, "Shortcut", [1]],  # 12
            [-1, 1, "nn.MaxPool2d", [2, 2]],  # 13 P5/32
            [-1, 1, "SPPCSPC", [16]],
            [-1, 1, "SP", [5]],  # 15
        ],
        "head": [
            [-1, 1, "Conv", [8, 1, 1]],
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
            [[-1, 12], 1, "Concat", [1]],  # 18: 24 channels
            [-1, 1, "RepConv", [24, 3, 1]],  # identity branch
            [-1, 1, "RepConv", [16, 3, 1]],  # 20
            [9, 1, "ReOrg", []],  # 21: 64 channels at /16
            [[-1, 20], 1, "Concat", [1]],  # 22
            [[9, 22, 15], 1, "IDetect", ["nc", "anchors"]],
        ],
    }
    model_a = randomize(Model(deepcopy(kinds)))
    model_a.names = ["cat", "dog"]

    # A four-level IAuxDetect model shaped like the P6 family.
    aux = {
        "nc": 3, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": anchors4,
        "backbone": [
            [-1, 1, "ReOrg", []],
            [-1, 1, "Conv", [8, 3, 1]],
            [-1, 1, "Conv", [16, 3, 2]],
            [-1, 1, "Conv", [16, 3, 2]],  # 3 P3
            [-1, 1, "DownC", [16]],  # 4 P4
            [-1, 1, "Conv", [16, 3, 2]],  # 5 P5
            [-1, 1, "Conv", [16, 3, 2]],  # 6 P6
        ],
        "head": [
            [3, 1, "Conv", [16, 3, 1]],
            [4, 1, "Conv", [16, 3, 1]],
            [5, 1, "Conv", [16, 3, 1]],
            [6, 1, "Conv", [16, 3, 1]],
            [3, 1, "Conv", [8, 3, 1]],
            [4, 1, "Conv", [8, 3, 1]],
            [5, 1, "Conv", [8, 3, 1]],
            [6, 1, "Conv", [8, 3, 1]],
            [[7, 8, 9, 10, 11, 12, 13, 14], 1, "IAuxDetect", ["nc", "anchors"]],
        ],
    }
    model_b = randomize(Model(deepcopy(aux)))
    model_b.names = ["helmet", "vest", "person"]

    # Plain Detect with a RepConv built directly in its deploy form.
    deploy = {
        "nc": 1, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": anchors3,
        "backbone": [
            [-1, 1, "Conv", [8, 3, 2]],
            [-1, 1, "Conv", [16, 3, 2]],
            [-1, 1, "Conv", [16, 3, 2]],  # 2 P3
            [-1, 1, "Conv", [16, 3, 2]],  # 3 P4
            [-1, 1, "Conv", [16, 3, 2]],  # 4 P5
        ],
        "head": [
            [2, 1, "RepConv", [16, 3, 1, None, 1, True, True]],
            [3, 1, "Conv", [16, 3, 1]],
            [4, 1, "Conv", [16, 3, 1]],
            [[5, 6, 7], 1, "Detect", ["nc", "anchors"]],
        ],
    }
    model_c = randomize(Model(deepcopy(deploy)))
    model_c.names = ["thing"]

    # Training-style checkpoint: model + ema + SGD state + numpy fitness, as train.py saves.
    optimizer = torch.optim.SGD(model_a.parameters(), lr=0.01, momentum=0.9)
    model_a.train()
    loss = sum(x.float().sum() for x in model_a(torch.rand(1, 3, 64, 64)))
    loss.backward()
    optimizer.step()
    model_a.eval()
    ema = deepcopy(model_a)
    training = {"epoch": 4, "best_fitness": np.array([0.125]),
                "training_results": "results", "model": deepcopy(model_a).half(),
                "ema": deepcopy(ema).half(), "updates": 17,
                "optimizer": optimizer.state_dict(), "wandb_id": None}
    save(training, "kinds-training.pt")
    save(stripped(model_a), "kinds.pt")
    save(stripped(model_a), "kinds-legacy.pt", _use_new_zipfile_serialization=False)
    save(stripped(model_b), "aux.pt")
    save(stripped(model_c), "deploy.pt")

    # Fused the official way (Model.fuse), kept in float32 and bfloat16.
    with torch.no_grad():
        fused_a = deepcopy(model_a).fuse()
        fused_b = deepcopy(model_b).fuse()
    ck = stripped(fused_a)
    ck["model"] = ck["model"].float()
    save(ck, "kinds-fused.pt")
    ck = stripped(fused_b)
    ck["model"] = ck["model"].to(torch.bfloat16)
    save(ck, "aux-fused.pt")

    # The same archive with every entry deflated.
    src = os.path.join(out, "aux.pt")
    buf = io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    with open(os.path.join(out, "aux-deflated.pt"), "wb") as f:
        f.write(buf.getvalue())

    # A state dict only: no architecture.
    save(model_c.half().state_dict(), "state-dict.pt")

    # A YOLOv5-style module in a YOLOv7 model: must be refused by class and index.
    class C3(nn.Module):
        def __init__(self):
            super().__init__()
            self.cv1 = common.Conv(16, 16, 1, 1)

    C3.__module__ = "models.common"
    C3.__qualname__ = "C3"
    common.C3 = C3
    v5 = deepcopy(model_c)
    c3 = C3()
    c3.i, c3.f, c3.type, c3.np = 3, -1, "models.common.C3", 0
    v5.model[3] = c3
    save(stripped(v5), "unsupported-c3.pt")


if __name__ == "__main__":
    main()
