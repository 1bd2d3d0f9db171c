#!/usr/bin/env bash
# GPU check of the training step (issue 6): the CUDA-graph and torch.compile tests, then `ptblm bench --full`,
# then the compiled path on the GRU shapes, four runs packed on the GPU, bf16 and fp16 (loss-scaled).
#
# Run once, from the repository root, on a machine with one CUDA GPU and PyTorch installed:
#   - through the session's `device` tool:  run(command="bash bench/gpu-check.sh", timeout_s=560)
#     (the machine has no network: nothing is installed; its python3 already has torch, pytest,
#     numpy, pyyaml, tabulate, matplotlib and tqdm, and `ptblm` runs from src/ via PYTHONPATH)
#   - on a cluster GPU node:  OUT=results/gpu-check bash bench/gpu-check.sh
# It stays well under 10 minutes on an H100 (each part has its own time limit) and writes into
# $OUT (default results/gpu-check): environment.txt, pytest.txt, bench-full.txt,
# bench-<time>.json (fp32, all 11 course shapes), bench-compiled.txt and its JSON (the GRU 512x2 shapes
# with the whole model and with the time step under torch.compile, compile seconds apart), bench-packed.txt and its JSON (4 runs at once on the GPU
# against one alone), bench-bf16.txt and its JSON (a subset in bf16), bench-fp16.txt and its JSON (the same
# subset in fp16: autocast with loss scaling, inside the CUDA graph).
#
# What goes into the README's performance section afterwards: the table at the end of
# bench-full.txt (ms/step, x builtin, s/epoch per path) and its `suite` line, with the card, the date,
# torch's version (environment.txt) and the commit the calling session had (`git describe
# --always --dirty` there: the copied tree has no .git, so the JSON's code_version is the package
# version), plus the pass/skip counts of pytest.txt.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu-check}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv || true
  "$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, "device", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'
} 2>&1 | tee "$OUT/environment.txt"
if ! "$PYTHON" -c 'import torch; raise SystemExit(not torch.cuda.is_available())'; then
  echo "gpu-check: torch sees no CUDA device; nothing to check here" | tee -a "$OUT/environment.txt"
  exit 1
fi

# 1. The step tests, CUDA ones included (they skip without a GPU; fp16's graph, overflow and resume tests too),
#    and the bench tests.
per_test_limit=$("$PYTHON" -c 'import pytest_timeout' 2>/dev/null && echo "--timeout=120")
export TORCHINDUCTOR_CACHE_DIR="$(mktemp -d)"  # empty: compile times as the first task of an array sees them
timeout 180 "$PYTHON" -m pytest -q -rs -p no:cacheprovider ${per_test_limit:-} \
  tests/test_step.py tests/test_fp16.py tests/test_compiling.py tests/test_bench.py 2>&1 | tee "$OUT/pytest.txt" \
  || status=1

# 2. Every course shape on every path, strict fp32 (TF32 off: the default of training and bench).
timeout 200 "$PYTHON" -m ptblm.cli bench --full --out "$OUT" 2>&1 | tee "$OUT/bench-full.txt" || status=1

# 3. torch.compile on the shapes of the GRU targets, whole model (about a minute of compiling each, cold
#    cache) and time step only (seconds).
if (( SECONDS < 330 )); then
  timeout $(( 525 - SECONDS )) "$PYTHON" -m ptblm.cli bench --full --only gru-h512-l2 --compile --steps 30 \
    --out "$OUT" 2>&1 | tee "$OUT/bench-compiled.txt" || status=1
else
  echo "gpu-check: skipped the compiled bench (${SECONDS} s spent)" | tee "$OUT/bench-compiled.txt"
fi

# 4. Four runs packed on the GPU (a profile's runs_per_gpu: 4) against one alone, on the small-batch GRU.
if (( SECONDS < 460 )); then
  timeout $(( 535 - SECONDS )) "$PYTHON" -m ptblm.cli bench --full --only gru-h512-l2-bs20 --runs-per-gpu 4 \
    --steps 50 --out "$OUT" 2>&1 | tee "$OUT/bench-packed.txt" || status=1
else
  echo "gpu-check: skipped the packing bench (${SECONDS} s spent)" | tee "$OUT/bench-packed.txt"
fi

# 5. bf16 autocast where matmuls dominate, if time is left (SECONDS counts since the script began).
if (( SECONDS < 480 )); then
  timeout $(( 548 - SECONDS )) "$PYTHON" -m ptblm.cli bench --full --only transformer gru-h2048 \
    --precision bf16 --steps 20 --out "$OUT" 2>&1 | tee "$OUT/bench-bf16.txt" || status=1
else
  echo "gpu-check: skipped the bf16 bench (${SECONDS} s spent)" | tee "$OUT/bench-bf16.txt"
fi

# 6. fp16 (autocast with loss scaling) on the same subset, beside bf16, if time is left.
if (( SECONDS < 500 )); then
  timeout $(( 555 - SECONDS )) "$PYTHON" -m ptblm.cli bench --full --only transformer gru-h2048 \
    --precision fp16 --steps 20 --out "$OUT" 2>&1 | tee "$OUT/bench-fp16.txt" || status=1
else
  echo "gpu-check: skipped the fp16 bench (${SECONDS} s spent)" | tee "$OUT/bench-fp16.txt"
fi

echo "gpu-check: done in ${SECONDS} s, status ${status}; files in ${OUT}:" && ls "$OUT"
exit "$status"
