"""An outside client: runs yolots ONNX files with the PyPI onnxruntime and writes every
output for the Rust test to compare. Reads a JSON spec (argv[1]), prints one JSON line.

spec = {
  "models": [{"path": file, "expose": [inner value names to add as outputs]}],
  "inputs": [{"path": raw little-endian float32, "shape": [B, 3, H, W]}],
  "out_dir": folder for the outputs,
}
Each model is first checked with onnx.checker.check_model(full_check=True); the answer
lists, per model, its metadata_props, its input's dims and, per input, every output as
{"name", "path", "shape"} (raw little-endian float32).
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    spec = json.load(open(sys.argv[1]))
    inputs = [
        np.fromfile(i["path"], dtype="<f4").reshape(i["shape"]) for i in spec["inputs"]
    ]
    result = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "models": []}
    for k, entry in enumerate(spec["models"]):
        model = onnx.load(entry["path"])
        onnx.checker.check_model(model, full_check=True)
        dims = [
            d.dim_param or d.dim_value
            for d in model.graph.input[0].type.tensor_type.shape.dim
        ]
        for name in entry.get("expose", []):
            model.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]
        runs = []
        for j, x in enumerate(inputs):
            files = []
            for name, y in zip(names, session.run(None, {"images": x})):
                path = os.path.join(spec["out_dir"], f"m{k}.i{j}.{name}.f32")
                np.ascontiguousarray(y, dtype="<f4").tofile(path)
                files.append({"name": name, "path": path, "shape": list(y.shape)})
            runs.append(files)
        result["models"].append(
            {
                "checker": "ok",
                "input_dims": dims,
                "metadata": {p.key: p.value for p in model.metadata_props},
                "outputs": runs,
            }
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
