#!/usr/bin/env bash
# Several benchmarks/alignment.py runs at once on one GPU (JAX), each with its
# own work folder and results file; the logs, results JSON, per-run log.csv and
# curves come back as $OUT/results.tgz (or ./alignment_parallel.tgz).
#
#   RM=runs/rm/model LIMIT=480 bash benchmarks/alignment_parallel.sh \
#       "a|--sft runs/sft400/model --methods ppo --reuse-rm --ppo-lr 1e-5" \
#       "b|--sft runs/sft400/model --methods ppo --reuse-rm --ppo-lr 5e-6"
#
# Each argument is NAME|ARGUMENTS (results: alignment_NAME.json). RM copies a
# trained reward model into every run's work folder (for --reuse-rm); LIMIT
# stops each run after that many seconds (default 540). Four processes share
# an H200 well; eight contend for the host's cores (each step runs on the
# CPU between programs) and every step gets several times slower.
source benchmarks/gpu_env.sh
export XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-$PWD}
TASKS=${TASKS:-add,larger,reverse,sort,count,katakana,kansuji}
logs=$(mktemp -d)/logs
mkdir -p "$logs"
pids=()
for spec in "$@"; do
  name=${spec%%|*}; args=${spec#*|}
  work=/tmp/alignment-parallel/$name
  if [ -n "$RM" ]; then mkdir -p "$work/rm" && rm -rf "$work/rm/model" && cp -r "$RM" "$work/rm/model"; fi
  ( timeout "${LIMIT:-540}" python3 benchmarks/alignment.py --tasks "$TASKS" --work "$work" --tag "$name" $args \
        > "$logs/$name.log" 2>&1
    cp "benchmarks/results/alignment_$name.json" "$logs/" 2>/dev/null
    for d in "$work"/*/; do
      cp "$d/curves.png" "$logs/${name}_$(basename "$d").png" 2>/dev/null
      cp "$d/log.csv" "$logs/${name}_$(basename "$d").csv" 2>/dev/null
    done ) &
  pids+=($!)
done
# Progress every 30 s: GPU use and each run's last line.
( while sleep 30; do
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
    for f in "$logs"/*.log; do echo "$(basename "$f"): $(tail -n 1 "$f" | cut -c1-160)"; done
  done ) &
monitor=$!
wait "${pids[@]}"
kill $monitor
tar czf "$OUT/results.tgz" -C "$(dirname "$logs")" logs
echo "results: $OUT/results.tgz"
