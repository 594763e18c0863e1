"""An outside client: loads a yolots artifact with plain PyTorch and compares it with
expected outputs. Reads a JSON spec (argv[1]), prints one JSON line of results.

spec = {
  "artifact": path, "lite": bool, "method": "forward",
  "input": path of raw little-endian float32, "input_shape": [B, 3, H, W],
  "expected": [{"path": ..., "shape": [...], "index": i, "split": bool}],
}
Each expected output is compared with the method's i-th output; with "split" the last
dimension is compared as boxes (:4) and probabilities (4:) separately. An entry may add
"no_det" (nc + 5) for pose rows: probabilities are then 4:no_det, and the keypoints after
them are compared as x, y ("kpt_xy", pixels) and confidences ("kpt_conf").
"""
import json
import sys

import torch


def read(path, shape):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    return torch.frombuffer(data, dtype=torch.float32).reshape(shape)


def main():
    spec = json.load(open(sys.argv[1]))
    result = {"torch": torch.__version__}
    if spec.get("lite"):
        from torch.jit.mobile import _load_for_lite_interpreter

        module = _load_for_lite_interpreter(spec["artifact"])
        run = lambda x: module.run_method(spec["method"], x)
    else:
        extra = {"yolots.json": ""}
        module = torch.jit.load(spec["artifact"], map_location="cpu", _extra_files=extra)
        result["metadata"] = json.loads(extra["yolots.json"])
        result["names_attr"] = list(module.names)
        result["stride_attr"] = list(module.stride)
        run = getattr(module, spec["method"])
    x = read(spec["input"], spec["input_shape"])
    with torch.no_grad():
        y = run(x)
    outputs = list(y) if isinstance(y, (list, tuple)) else [y]
    errors = []
    for e in spec["expected"]:
        got = outputs[e["index"]].float()
        want = read(e["path"], e["shape"])
        if list(got.shape) != list(want.shape):
            errors.append({"index": e["index"], "shape": list(got.shape)})
            continue
        if e.get("split"):
            no_det = e.get("no_det", got.shape[-1])
            diff = (got - want).abs()
            error = {
                "index": e["index"],
                "boxes": diff[..., :4].max().item(),
                "probs": diff[..., 4:no_det].max().item(),
            }
            if no_det < got.shape[-1]:
                kpt = diff[..., no_det:].reshape(*diff.shape[:-1], -1, 3)
                error["kpt_xy"] = kpt[..., :2].max().item()
                error["kpt_conf"] = kpt[..., 2].max().item()
            errors.append(error)
        else:
            errors.append({"index": e["index"], "max": (got - want).abs().max().item()})
    result["errors"] = errors
    print(json.dumps(result))


if __name__ == "__main__":
    main()
