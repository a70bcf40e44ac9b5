#!/usr/bin/env bash
# The one prepared GPU run (../shared/GPU.md): on a machine with a CUDA GPU, within about
# 8 minutes, it runs
#   1. the `gpu`-marked tests (fp16 + GradScaler, bf16, channels_last, compile, resident data),
#   2. `fer-search bench --device cuda --quick`,
#   3. a short search on real FER2013 with four trials sharing the GPU (--gpus-per-trial 0.25),
# and writes everything under one folder. Without CUDA it says so and skips parts 1-3 cleanly
# (exit 0), so it can be checked end to end anywhere.
#
#   benchmarks/gpu_check.sh OUT_DIR [FER2013_CSV]        (default data: ./fer2013.csv)
#
# Runs from a checkout (PYTHONPATH=the repository); extra Python packages (the device's Ray and
# Optuna) via PYTHONPATH before it is called. Budgets: tests 120 s, bench 150 s, search 240 s.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: benchmarks/gpu_check.sh OUT_DIR [FER2013_CSV]}
data=${2:-fer2013.csv}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
py=${PYTHON:-python3}
summary="$out/summary.md"

say() { echo "$*" | tee -a "$summary"; }
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local code=$?
  say "- $name: exit $code in $((SECONDS - start)) s (limit $limit s; log: $name.log): \`$*\`"
  return 0
}

: >"$summary"
say "# GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say ""
say "- GPUs: $(nvidia-smi -L 2>/dev/null | tr '\n' ';' || true)"
say "- versions: $($py -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1)"
cuda=$($py -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
if [ "$cuda" != "1" ]; then
  say "- CUDA: not available here: skipped the gpu tests, bench --device cuda and the GPU search"
  exit 0
fi
say "- CUDA: $($py -c 'import torch; p = torch.cuda.get_device_properties(0); print(p.name, f"{p.total_memory / 2**30:.0f} GiB", "bf16 native:", torch.cuda.is_bf16_supported(including_emulation=False))')"

step gpu-tests 120 "$py" -m pytest -q -m gpu -p no:cacheprovider tests/
step bench 150 "$py" -m fer_search bench --device cuda --quick --out "$out/bench"
if [ -f "$data" ]; then
  step search 240 "$py" -m fer_search --space search_spaces/gpu_check.yaml --data "$data" \
    --gpus 1 --gpus-per-trial 0.25 --storage "$out/search" --name gpu-check --verbose 0
else
  say "- search: skipped, no data file $data"
fi
exit 0
