#!/usr/bin/env bash
# Every GPU benchmark in one go, for a machine with JAX + CUDA and no TensorFlow.
#
# Usage (on the GPU machine, from the repository root):
#     bash benchmarks/run_gpu.sh [RESULTS_DIR]
#
# Keras, namex and optree may be missing there: put their wheels in .whl/
# first (benchmarks/README.md says how); benchmarks/gpu_env.sh installs them.
# Writes train_<device>.json (and generation_<device>.json once
# benchmarks/generation.py exists) plus logs into RESULTS_DIR, default
# benchmarks/results.
set -u -o pipefail
results=${1:-benchmarks/results}
mkdir -p "$results"
. benchmarks/gpu_env.sh

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv
python3 -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())" || exit 1

# Training: kerasllm vs plain Keras, baby (64 x 256) and gpt2-124m (16 x 1024),
# mixed bf16, XLA; with a per-op profile of each model.
python3 benchmarks/train.py --preset baby gpt2-124m --profile \
    --output-dir "$results" \
    2>&1 | tee "$results/train_gpu.log"

# Generation (benchmarks/generation.py, from the generation work): batch 1.
if [ -f benchmarks/generation.py ]; then
    python3 benchmarks/generation.py --backend jax --shapes gpt2-124m --new-tokens 256 \
        --skip-keras-hub --output "$results/generation_gpu.json" 2>&1 | tee "$results/generation_gpu.log"
else
    echo "benchmarks/generation.py is not there yet: generation not measured"
fi

# Greedy decoding at the gpt2-124m shape (full 50304 vocabulary), bf16
# weights, 16-token prompts, 256 new tokens, batch 1 and 32, through
# kerasllm.generation.Generator; beside the bandwidth bound (weight bytes
# read once per step at the chip's datasheet memory bandwidth, e.g. 3.35
# TB/s on an H100, 4.8 on an H200).
python3 - <<'PY' 2>&1 | tee "$results/decode_gpu.log"
import time, numpy as np
from kerasllm.generation import Generator
from benchmarks.common import device_info
from kerasllm.models import GPT
model = GPT.from_preset("gpt2-124m", dtype="bfloat16")
generator = Generator(model)
weight_bytes = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
device = device_info()
tbps = device["hbm_tbps"]
bound = f"bound at {tbps} TB/s: {tbps * 1e12 / weight_bytes:,.0f} steps/s" if tbps else "no datasheet bandwidth for this chip"
print(f"{device['name']}: weights {weight_bytes / 1e6:.0f} MB; {bound}")
for batch in (1, 32):
    prompts = [list(map(int, row)) for row in np.random.default_rng(batch).integers(0, 50000, (batch, 16))]
    run = lambda n: generator.complete(prompts, max_new_tokens=n, end_token_id=None)
    run(1); run(256)  # compile both lengths
    best = {}
    for n in (1, 256):
        times = []
        for _ in range(3):
            start = time.perf_counter(); out = run(n); times.append(time.perf_counter() - start)
        best[n] = min(times)
    assert all(len(c.token_ids) == 256 for c in out)
    decode = batch * 255 / (best[256] - best[1])
    print(f"batch {batch}: {batch * 256 / best[256]:,.0f} tokens/s end to end, {decode:,.0f} tokens/s "
          f"decode, time to first token {1e3 * best[1]:.1f} ms, {decode / batch:,.0f} steps/s")
PY
