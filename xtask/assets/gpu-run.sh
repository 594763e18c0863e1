#!/usr/bin/env bash
# Converts and validates every fixture of this bundle on a GPU, in float32 and float16,
# and prints the report figures. Needs PyTorch 2.11 (its libtorch) and an NVIDIA GPU.
#
#   ./run.sh                      # cuda:0, torch found through python3
#   DEVICE=cuda:1 PYTHON=/opt/venv/bin/python ./run.sh
#   TORCH_LIB=/path/to/torch/lib ./run.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
if [ -z "${TORCH_LIB:-}" ]; then
  TORCH_LIB=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || {
    echo "run.sh: no torch in $python; set TORCH_LIB to the torch lib folder" >&2
    exit 1
  }
fi
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
device=${DEVICE:-cuda:0}
runs=${LATENCY_RUNS:-50}
out=${OUT:-$here/out}
mkdir -p "$out"

"$here/bin/yolots" --version
# The converter (what `yolots convert` runs) is the program that loads libtorch.
"$here/bin/yolots-converter" runtime || exit 1
status=0
for pt in "$here"/fixtures/*.pt; do
  name=$(basename "$pt" .pt)
  for precision in fp32 fp16; do
    for head in decoded raw; do
      tag="$name.$precision.$head"
      echo "== $tag on $device"
      "$here/bin/yolots" convert "$pt" -o "$out/$tag.torchscript.pt" --report "$out/$tag.report.json" \
        --device "$device" --precision "$precision" --head "$head" --latency-runs "$runs" \
        || { echo "!! $tag failed"; status=1; }
    done
  done
done

"$python" - "$out" <<'PY'
import json, pathlib, sys
rows = []
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.report.json")):
    r = json.loads(path.read_text())
    checks = r["validation"]["checks"]
    worst = max((c.get("max_abs_error") or 0.0 for c in checks), default=0.0)
    lat = r.get("latency") or {}
    total = sum(s["seconds"] for s in r["stages"] if s["stage"] not in ("validating", "timing"))
    rows.append((path.name.replace(".report.json", ""), r["validation"]["status"], r["validation"]["device"],
                 worst, lat.get("p50_ms"), lat.get("p90_ms"), total))
print(f"{'artifact':<40} {'validation':<14} {'device':<10} {'max|err|':>10} {'p50 ms':>8} {'p90 ms':>8} {'convert s':>9}")
for name, status, device, worst, p50, p90, total in rows:
    f = lambda v: "-" if v is None else f"{v:.2f}"
    print(f"{name:<40} {status:<14} {device:<10} {worst:>10.2e} {f(p50):>8} {f(p90):>8} {total:>9.2f}")
PY
exit $status
