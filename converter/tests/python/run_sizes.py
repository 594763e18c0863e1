"""Runs a yolots ONNX file with the PyPI onnxruntime on zero images of each size given
(argv[2:], as HxW) and prints, per size, `H W ran` or `H W refused <error on one line>`."""
import sys

import numpy as np
import onnxruntime as ort


def main():
    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    for size in sys.argv[2:]:
        h, w = (int(v) for v in size.split("x"))
        try:
            session.run(None, {"images": np.zeros((1, 3, h, w), dtype="float32")})
            print(h, w, "ran")
        except Exception as error:  # onnxruntime raises its own exception types
            print(h, w, "refused", " ".join(str(error).split()))


if __name__ == "__main__":
    main()
