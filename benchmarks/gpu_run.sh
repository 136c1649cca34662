#!/usr/bin/env bash
# The GPU measurements of docs/PERFORMANCE.md in one run: the LLaVA-1.5-7B shape (random weights,
# bf16) through bench_ablation.py --full-size and bench_stages.py --full-size. Writes JSON and logs
# into ${OUT:-build/gpu}.
set -uo pipefail
out=${OUT:-build/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers, sklearn; print('torch', torch.__version__, 'transformers', transformers.__version__, 'sklearn', sklearn.__version__)" | tee -a "$out/gpu.txt"
timeout ${ABLATION_TIMEOUT:-200} python3 benchmarks/bench_ablation.py --full-size --json "$out/ablation.json" 2>&1 | grep -v "masks (fast)" | tee "$out/ablation.log"
timeout ${STAGES_TIMEOUT:-300} python3 benchmarks/bench_stages.py --full-size --json "$out/stages.json" 2>&1 | tee "$out/stages.log"
