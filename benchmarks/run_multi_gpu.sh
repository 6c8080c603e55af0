#!/usr/bin/env bash
# Data-parallel scaling of gpt2-124m pretraining across the GPUs of one host.
#
# Usage (on a machine with two or more GPUs, JAX + CUDA, from the repo root):
#     bash benchmarks/run_multi_gpu.sh [RESULTS_DIR]
#
# Runs benchmarks/train.py three times, kerasllm only, mixed bf16:
#   1. every GPU, keras.distribution.DataParallel, global batch 16 x N;
#   2. GPU 0 alone, batch 16 (the per-GPU baseline for scaling efficiency);
#   3. GPU 0 alone, batch 16 x N (the same global batch as 1, same seed, same
#      batches: its losses must match run 1's).
# Then prints tokens/s per GPU against one GPU and the loss difference.
# Keras, namex and optree wheels in .whl/ are installed first
# (benchmarks/gpu_env.sh).
set -u -o pipefail
results=${1:-benchmarks/results}
mkdir -p "$results"
. benchmarks/gpu_env.sh

gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
nvidia-smi --query-gpu=name,memory.total --format=csv
if [ "$gpus" -lt 2 ]; then
    echo "needs two or more GPUs; this machine has $gpus" >&2
    exit 2
fi
common="--preset gpt2-124m --models kerasllm --steps 20 --repeats 3"
python3 benchmarks/train.py $common --distribution data_parallel \
    --batch-size $((16 * gpus)) --output "$results/train_multi_gpu_x$gpus.json" \
    2>&1 | tee "$results/train_multi_gpu.log" || exit 1
CUDA_VISIBLE_DEVICES=0 python3 benchmarks/train.py $common --batch-size 16 \
    --output "$results/train_multi_gpu_x1_b16.json" 2>&1 | tee -a "$results/train_multi_gpu.log" || exit 1
CUDA_VISIBLE_DEVICES=0 python3 benchmarks/train.py $common --batch-size $((16 * gpus)) \
    --output "$results/train_multi_gpu_x1_b$((16 * gpus)).json" 2>&1 | tee -a "$results/train_multi_gpu.log" || exit 1

python3 - "$results" "$gpus" <<'PY' | tee -a "$results/train_multi_gpu.log"
import json, sys
folder, gpus = sys.argv[1], int(sys.argv[2])
row = lambda name: json.load(open(f"{folder}/{name}.json"))["rows"][0]
multi, single = row(f"train_multi_gpu_x{gpus}"), row("train_multi_gpu_x1_b16")
same_batch = row(f"train_multi_gpu_x1_b{16 * gpus}")
efficiency = multi["tokens_per_second"] / (gpus * single["tokens_per_second"])
print(f"{gpus} GPUs: {multi['tokens_per_second']:,.0f} tokens/s "
      f"({multi['tokens_per_second_per_device']:,.0f} per GPU); one GPU "
      f"{single['tokens_per_second']:,.0f}; scaling efficiency {efficiency:.1%}")
diffs = [abs(a - b) for a, b in zip(multi["losses_all_epochs"], same_batch["losses_all_epochs"])]
print(f"losses at global batch {16 * gpus}: {gpus} GPUs {multi['losses_all_epochs']}")
print(f"                         one GPU {same_batch['losses_all_epochs']}")
print(f"largest difference {max(diffs):.2e}")
PY
