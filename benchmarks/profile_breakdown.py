"""Where a GPU training step's time goes, by part of the model.

Reads a result JSON of `benchmarks/train.py --profile --profile-top 0` (every
device op with its time) and the optimized HLO of the same train step (the
`*_gpu_after_optimizations.txt` file that `XLA_FLAGS="--xla_dump_to=DIR
--xla_dump_hlo_as_text"` writes; `benchmarks/train_flag_sweep.sh` packs it as
`hlo_<name>.tar.gz`). Each profiled kernel is matched to its HLO fusion, and
through the fusion's `op_name` metadata (`jvp(block_3)/feed_forward/mul`, ...)
to a part of the model, so the table reads "layer-norm backward 1.2 ms"
rather than "fusion_1660 1.2 ms". XLA deduplicates identical fusions (one
kernel for all twelve blocks), so a row's count says how many HLO
instructions share the kernel. Matmuls (cuBLAS `nvjet_*`, Triton `gemm_*`)
and cuDNN attention kernels carry no HLO name and are grouped by kind.

Usage:
    python benchmarks/profile_breakdown.py RESULT.json HLO.tar.gz|HLO_DIR [--top N]

Prints the costliest kernels with their model part and a per-part total in
milliseconds per step; needs no accelerator.
"""

import argparse
import collections
import glob
import json
import os
import re
import tarfile
import tempfile

# Model parts, matched in this order against a fusion's op_name.
PARTS = (
    ("optimizer", ("adam_w", "adam", "sgd")),
    ("loss", ("lm_loss", "compile_loss")),
    ("layer norm", ("norm",)),
    ("gelu / activation", ("feed_forward/mul", "gelu", "tanh")),
    ("qkv split / concat", ("attention/split", "attention/concatenate")),
    ("bias and projection epilogues", ("qkv", "/up/", "/down/", "/output/")),
    ("embedding", ("embedding",)),
    ("dtype casts", ("convert_element_type",)),
)


def hlo_text(path):
    """The text of the optimized train-step HLO in a folder or a .tar.gz."""
    if os.path.isdir(path):
        folder = path
    else:
        folder = tempfile.mkdtemp(prefix="kerasllm_hlo_")
        with tarfile.open(path) as archive:
            archive.extractall(folder, filter="data")
    files = glob.glob(os.path.join(folder, "*after_optimizations.txt"))
    if not files:
        raise FileNotFoundError(f"no *after_optimizations.txt in {path!r}")
    return open(max(files, key=os.path.getsize)).read()


def fusion_index(text):
    """Maps each HLO instruction name (dots as underscores) to (group, op_name, shape).

    `group` is XLA's `deduplicated_name` when it has one (the shared kernel),
    else the instruction's own name; `op_name` has the per-block index
    replaced by `N` so the twelve blocks read alike.
    """
    index, members = {}, collections.Counter()
    pattern = re.compile(r"\s*(?:ROOT )?%(\S+) = (\(.*?\)|\S+) [\w-]+\(")
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        name, shape = match.groups()
        dedup = re.search(r'deduplicated_name="([^"]+)"', line)
        group = dedup.group(1) if dedup else name
        op_name = re.search(r'op_name="([^"]+)"', line)
        op_name = op_name.group(1) if op_name else ""
        op_name = re.sub(r"block_\d+", "block_N", op_name.replace("jit(train_step)/", ""))
        index[name.replace(".", "_")] = (group, op_name, shape)
        members[group] += 1
    return index, members


def part_of(kernel, op_name):
    if kernel.startswith("nvjet") or "gemm" in kernel or "cublas" in kernel:
        return "matmul"
    if "sdpa" in kernel or "cudnn" in kernel or "flash" in kernel:
        return "attention (cuDNN)"
    for part, keys in PARTS:
        if any(key in op_name for key in keys):
            return part
    return "other"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", help="train.py result JSON with a full --profile")
    parser.add_argument("hlo", help="HLO dump folder or hlo_<name>.tar.gz")
    parser.add_argument("--top", type=int, default=30, help="Kernels to list.")
    parser.add_argument("--row", type=int, default=0, help="Which result row.")
    args = parser.parse_args(argv)

    results = json.load(open(args.result))
    row = results["rows"][args.row]
    if "profile" not in row:
        raise SystemExit(f"{args.result!r} row {args.row} has no profile: run train.py with --profile")
    steps = results.get("steps") or 1
    index, members = fusion_index(hlo_text(args.hlo))
    parts = collections.Counter()
    print(f"{row['preset']} / {row['model']}: {row['step_ms']:.2f} ms per step; "
          f"device busy {row['profile']['busy_ms'] / steps:.2f} ms per step")
    print(f"{'ms/step':>8}  {'kernel':<36} {'HLO':>4}  part: op_name")
    for i, op in enumerate(sorted(row["profile"]["ops"], key=lambda o: -o["ms"])):
        ms = op["ms"] / steps
        group, op_name, _ = index.get(op["name"].replace(".", "_"), (None, "", ""))
        part = part_of(op["name"], op_name)
        parts[part] += ms
        if i < args.top:
            count = members[group] if group else 0
            print(f"{ms:>8.3f}  {op['name'][:36]:<36} {count:>4}  {part}: {op_name[:70]}")
    print()
    print(f"{'part':<32} {'ms/step':>8}")
    for part, ms in parts.most_common():
        print(f"{part:<32} {ms:>8.2f}")
    print(f"{'total':<32} {sum(parts.values()):>8.2f}")


if __name__ == "__main__":
    main()
