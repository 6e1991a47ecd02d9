#!/usr/bin/env bash
# gpu_check.sh - every GPU-side check of zoo that a CUDA machine without TensorRT can run, in
# under 8 minutes: CUDA training (amp auto = bf16 on sm80+, and fp16 + GradScaler), export fp32
# and --half with parity, zoo bench --device cuda, package, zoo predict --device cuda with each
# runtime (each submission compared with eager and scored), the two-stage family from training
# to an offline CUDA prediction, the CUDA-sensitive tests and the inference micro-bench.
# One PASS/FAIL/TIMEOUT/SKIP line per step in $OUT/summary.txt; steps run in order of value, so
# the deadline skips the least important ones.
#
#   from the repo root:  bash benchmarks/gpu_check.sh
#   knobs (env):         DEADLINE=460 (s)  OUT=gpu_check_out  W=/tmp/zoo_gpu  WHL=.whl
#                        DEVICE=cuda (DEVICE=cpu: a slow dry run of every command, no GPU)
#
# Without network, wheels for what the machine lacks go in .whl/ (cp312, manylinux), e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 -d .whl pydicom==3.0.2 albumentations==2.0.8 \
#     albucore==0.0.24 pydantic==2.14.4 pydantic-core==2.50.5 typing-inspection==0.4.5 \
#     annotated-types==0.8.0 stringzilla==5.3.2 simsimd==6.5.16 onnxconverter-common==1.16.0
set -uo pipefail
ROOT=$(pwd)
[ -f "$ROOT/pyproject.toml" ] && [ -d "$ROOT/zoo" ] || { echo "run from the zoo repo root"; exit 2; }
OUT=${OUT:-$ROOT/gpu_check_out}
W=${W:-/tmp/zoo_gpu}
WHL=${WHL:-$ROOT/.whl}
DEADLINE=${DEADLINE:-460}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT" && rm -rf "$W" && mkdir -p "$W"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1
export TORCHINDUCTOR_CACHE_DIR=$W/inductor KAGGLE_USERNAME=gpu-check DEVICE
T0=$(date +%s)

# step NAME SECONDS CMD...: CMD under min(SECONDS, time left); the verdict goes to the summary.
step() {
  local name=$1 budget=$2 left rc verdict s
  shift 2
  left=$((DEADLINE - $(date +%s) + T0))
  if [ "$left" -lt 15 ]; then
    printf '%-28s %-14s\n' "$name" "SKIP(deadline)" | tee -a "$SUMMARY"
    return 0
  fi
  [ "$budget" -gt "$left" ] && budget=$left
  echo && echo "=== [$name] limit ${budget}s: $*"
  s=$(date +%s)
  timeout --signal=INT --kill-after=10 "$budget" "$@"
  rc=$?
  verdict=PASS
  [ $rc -ne 0 ] && verdict="FAIL(rc=$rc)"
  [ $rc -eq 124 ] && verdict=TIMEOUT
  printf '%-28s %-14s %4ss\n' "$name" "$verdict" "$(($(date +%s) - s))" | tee -a "$SUMMARY"
}

if ls "$WHL"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$W/site" "$WHL"/*.whl
fi
export PYTHONPATH=$W/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
ZOO=(python3 -m zoo.cli)

step preflight 60 python3 - <<'PY'
import sys
import torch
from zoo.environment import amp_dtype, describe
import os
assert torch.cuda.is_available() or os.environ["DEVICE"] == "cpu", "no CUDA device"
print(describe())
print("TF32 defaults: cudnn", torch.backends.cudnn.allow_tf32,
      "matmul", torch.backends.cuda.matmul.allow_tf32)
print("is_bf16_supported()", torch.cuda.is_bf16_supported(), "-> amp auto:", amp_dtype("auto", os.environ["DEVICE"]))
import onnxruntime, pydicom, albumentations, onnxconverter_common, timm  # noqa: F401
sys.exit(0 if timm.list_models("test_convnext2") else 1)
PY
grep -q '^preflight .*PASS' "$SUMMARY" || { cat "$SUMMARY"; exit 4; }

step synth 40 "${ZOO[@]}" synth --out "$W/data" --studies 30 --test-studies 4 --size 64
step prepare 40 "${ZOO[@]}" prepare --data "$W/data" --out "$W/cache" --size 128 --workers 8
step train_amp_auto 90 "${ZOO[@]}" train tiny_split --data "$W/data" --cache "$W/cache" \
  --out "$W/run" --folds 0 --epochs 2 --device "$DEVICE" --workers 4
step train_amp_fp16 60 "${ZOO[@]}" train tiny_split --data "$W/data" --cache "$W/cache" \
  --out "$W/run_fp16" --folds 0 --epochs 2 --device "$DEVICE" --workers 4 --amp fp16 --models sagittal_t1
step check_train 20 python3 - "$W/run" "$W/run_fp16" <<'PY'
import json, math, sys
from pathlib import Path
bad = 0
for run in map(Path, sys.argv[1:]):
    for hist in sorted(run.glob("*/fold0/history.json")):
        rows = json.loads(hist.read_text())
        finite = all(math.isfinite(r[k]) for r in rows for k in ("train_loss", "val_loss"))
        bad += not finite or not (hist.parent / "best.pt").is_file()
        print(run.name, hist.parent.parent.name, [round(r["val_score"], 4) for r in rows])
sys.exit(1 if bad else 0)
PY
cp -a "$W/run" "$W/run_half"
step export_fp32 90 "${ZOO[@]}" export "$W/run" --fmt all --device "$DEVICE"
step export_half 90 "${ZOO[@]}" export "$W/run_half" --fmt all --half --device "$DEVICE"
step parity_table 20 python3 - "$W/run" "$W/run_half" <<'PY'
import sys
from pathlib import Path
from export.manifest import read_manifest
bad = 0
for root in map(Path, sys.argv[1:]):
    for name, model in read_manifest(root / "export")["models"].items():
        for fmt, e in model["folds"]["0"].items():
            for label, entry in [(fmt, e)] + [(f"{fmt}/{k}", v) for k, v in e.get("variants", {}).items()]:
                p = entry.get("parity") or {}
                print(f"{root.name:9s} {name:17s} {label:12s} {entry['status']:13s} "
                      f"{entry.get('precision') or '':5s} dp {p.get('max_abs_prob_diff', float('nan')):.1e} "
                      f"{(entry.get('reason') or '')[:90]}")
                bad += label in ("torchscript", "onnx", "onnx/fp16") and entry["status"] != "ok"
sys.exit(1 if bad else 0)
PY
step bench_half 60 "${ZOO[@]}" bench "$W/run_half" --device "$DEVICE" --runs 30
cp "$W/run_half/export/bench.json" "$OUT/bench_half.json" 2>/dev/null
cp "$W/run_half/export/manifest.json" "$OUT/manifest_half.json" 2>/dev/null
step package 60 "${ZOO[@]}" package "$W/run_half" --out "$W/pkg"
for rt in auto compile torch_fp16 onnx torchscript torch tensorrt; do
  step "predict_$rt" 90 "${ZOO[@]}" predict --model "$W/pkg" --data "$W/data" \
    --out "$W/sub_$rt.csv" --runtime "$rt" --device "$DEVICE" --workers 2 --work "$W/engines"
done
step compare_submissions 20 python3 - "$W" <<'PY'
import sys
from pathlib import Path
import numpy as np, pandas as pd
from zoo.metric import score_terms
w = Path(sys.argv[1])
solution = pd.read_csv(w / "data" / "test_solution.csv")
subs = {p.stem[4:]: pd.read_csv(p).set_index("row_id").sort_index() for p in w.glob("sub_*.csv")}
ref, bad = subs["torch"], 0
for name, df in sorted(subs.items()):
    diff = float(np.abs(df.to_numpy() - ref.to_numpy()).max())
    bad += diff > 2e-2
    print(f"{name:12s} max|p - torch| {diff:.1e}  score {score_terms(solution, df.reset_index())['score']:.4f}")
sys.exit(1 if bad else 0)
PY
# the two-stage family: localisers, crops through the geometry, crop classifiers, on the GPU
step train_two_stage 90 "${ZOO[@]}" train two_stage_tiny --data "$W/data" --cache "$W/cache_ts" \
  --out "$W/ts" --folds 0 --epochs 1 --size 128 --device "$DEVICE" --workers 4
step export_two_stage 60 "${ZOO[@]}" export "$W/ts" --fmt onnx,torchscript --device "$DEVICE"
step bench_two_stage 40 "${ZOO[@]}" bench "$W/ts" --device "$DEVICE" --runs 10
step package_two_stage 30 "${ZOO[@]}" package "$W/ts" --out "$W/ts_pkg"
step predict_two_stage 60 "${ZOO[@]}" predict --model "$W/ts_pkg" --data "$W/data" \
  --out "$W/ts_sub.csv" --device "$DEVICE" --workers 2
step score_two_stage 20 python3 - "$W" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
from zoo.metric import score_terms
w = Path(sys.argv[1])
cv = json.loads((w / "ts" / "cv.json").read_text())
solution = pd.read_csv(w / "data" / "test_solution.csv")
test = score_terms(solution, pd.read_csv(w / "ts_sub.csv"))
print(f"two_stage_tiny fold 0: CV {cv['score']:.4f}, test {test['score']:.4f}; "
      f"localisation {json.dumps(cv.get('localisation'))[:400]}")
PY
step bench_fp32 60 "${ZOO[@]}" bench "$W/run" --device "$DEVICE" --runs 30
step pytest_cuda 120 python3 -m pytest -q -p no:cacheprovider -o addopts="" -x \
  tests/test_export.py tests/test_deploy.py tests/test_layers.py
step bench_inference 60 python3 benchmarks/bench_inference.py --models tiny,edgenext --rounds 10 --batch 4
echo && echo "=== summary ($(($(date +%s) - T0)) s)" && cat "$SUMMARY"
