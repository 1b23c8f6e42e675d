#!/usr/bin/env bash
# polyjepa on one GPU, in under 8 minutes: install without dependencies (GPU machines may have no
# network, another torch and only common packages), run the `cuda` tests (tests/test_cuda.py) and
# the recipe benchmark on CUDA, then print a summary saying what ran and what was skipped, and why.
# Usage: bash benchmarks/gpu_check.sh        (from anywhere; PYTHON=... picks the interpreter)
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
start=$(date +%s)
summary=()

echo "== machine"
nvidia-smi -L 2>/dev/null || echo "nvidia-smi not found"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
if ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device: nothing to check here"; exit 1
fi

echo "== install (no dependencies, no build isolation: works offline)"
if $PY -m pip install -q --no-deps --no-build-isolation -e . ; then
  summary+=("install: ok")
else
  echo "install failed"; exit 1
fi
for module in librosa soundfile av plyfile pytest yaml; do
  $PY -c "import $module" 2>/dev/null || summary+=("missing $module: the checks that need it skip")
done

echo "== pytest -m cuda (tests/test_cuda.py)"
if $PY -c "import pytest" 2>/dev/null; then
  timeout 330 $PY -m pytest -q -p no:cacheprovider -m cuda -rs tests/test_cuda.py 2>&1 | tee /tmp/gpu_check_pytest.txt | tail -40
  summary+=("cuda tests: $(grep -E '(passed|failed|error)' /tmp/gpu_check_pytest.txt | tail -1)")
else
  summary+=("cuda tests: skipped (pytest not installed)")
fi

echo "== benchmark (synthetic data, fp32 and bf16)"
timeout 200 $PY benchmarks/bench_recipes.py --device cuda --synthetic --rounds 1 --steps 10 \
  --warmup 3 --variants fp32,bf16 2>&1 | tee /tmp/gpu_check_bench.txt | tail -30
summary+=("benchmark: $(grep -c '_samples_per_s=' /tmp/gpu_check_bench.txt) figures, $(grep -c '_error=' /tmp/gpu_check_bench.txt) errors")

echo "== summary ($(( $(date +%s) - start )) s)"
printf '%s\n' "${summary[@]}"
