"""Helpers shared by the benchmarks: device description, peak rates, timing, JSON.

Nothing here imports TensorFlow: the GPU benchmarks run under
`KERAS_BACKEND=jax` on a machine without it.
"""

import datetime
import json
import os
import pathlib
import platform
import re
import shlex
import sys
import time

import numpy as np

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"

# Dense bf16 tensor-core peak from the vendor datasheets (SXM parts). MFU in
# this repository is always measured against these, as PaLM and nanoGPT do.
DATASHEET_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
# HBM bandwidth in TB/s, for the memory-bound limit of decoding.
DATASHEET_HBM_TBPS = {"H100": 3.35, "H200": 4.8, "A100": 2.0}


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or `platform.processor()`)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def device_info():
    """Describes the device Keras computes on: name, slug, kind and peak rates.

    Returns a dict with `name` (e.g. "NVIDIA H100 80GB HBM3"), `slug` (used in
    result file names: "h100", "cpu"), `platform` ("gpu"/"cpu"), `backend`,
    `cores`, and `peak_bf16_tflops` / `hbm_tbps` from the datasheet table
    when the chip is known (else `None`).
    """
    import keras

    backend = keras.config.backend()
    name, kind = cpu_model(), "cpu"
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            name, kind = device.device_kind, device.platform
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            name, kind = details.get("device_name", "GPU"), "gpu"
    chip = next((c for c in DATASHEET_BF16_TFLOPS if c in name), None)
    slug = chip.lower() if (chip and kind != "cpu") else kind
    return {
        "name": name,
        "slug": slug,
        "platform": kind,
        "backend": backend,
        "cores": os.cpu_count(),
        "peak_bf16_tflops": DATASHEET_BF16_TFLOPS.get(chip) if kind != "cpu" else None,
        "hbm_tbps": DATASHEET_HBM_TBPS.get(chip) if kind != "cpu" else None,
    }


def software_versions():
    """Versions of the Python packages that decide the numbers."""
    versions = {"python": platform.python_version()}
    for module in ("keras", "jax", "jaxlib", "tensorflow", "keras_hub", "numpy"):
        if module in sys.modules:
            versions[module] = getattr(sys.modules[module], "__version__", "?")
    return versions


def to_numpy(x):
    """Copies a backend tensor to the host, which also waits for it."""
    import keras

    return keras.ops.convert_to_numpy(x)


def measure_matmul_tflops(dtype, size=4096, repeats=10):
    """The rate of one large square matmul through `keras.ops`, in TFLOP/s.

    A measured ceiling to read MFU against (METHOD.md: datasheet rates are
    leads). Random inputs, a warm-up product first, the median of `repeats`.
    """
    import keras

    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype=dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype=dtype)
    to_numpy(keras.ops.sum(keras.ops.matmul(a, b)))  # warm-up (and compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        to_numpy(keras.ops.sum(keras.ops.matmul(a, b)))
        times.append(time.perf_counter() - start)
    return 2 * size**3 / float(np.median(times)) / 1e12


def command_line():
    """The command that ran this script, ready to paste into a shell."""
    env = " ".join(
        f"{k}={os.environ[k]}" for k in ("KERAS_BACKEND",) if k in os.environ
    )
    argv = " ".join(shlex.quote(a) for a in ["python"] + sys.argv)
    return f"{env} {argv}".strip()


def write_results(path, payload):
    """Writes `payload` (with date and command added) as pretty JSON to `path`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def print_table(rows, columns):
    """Prints `rows` (dicts) as a plain aligned table of the given `columns`.

    `columns` is a list of `(key, header, format)`; a missing value prints "-".
    """
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append(
            [
                "-" if row.get(key) is None else fmt.format(row[key])
                for key, _, fmt in columns
            ]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for i, line in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for c, w in zip(line, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def attention_kernel(seq_len, num_heads, head_dim, dtype):
    """Which kernel `keras.ops.dot_product_attention(is_causal=True)` compiles to.

    On JAX, compiles the gradient of causal attention at this shape and looks
    for cuDNN's fused attention calls in the optimized HLO: returns
    "cudnn-fused" or "xla" (the unfused einsum/softmax path). Other backends
    return their name: they have no fused path for training here.
    """
    import keras

    if keras.config.backend() != "jax":
        return keras.config.backend()
    import jax
    import jax.numpy as jnp

    def loss(q, k, v):
        out = keras.ops.dot_product_attention(q, k, v, is_causal=True)
        return jnp.sum(out.astype("float32"))

    q = jnp.ones((1, seq_len, num_heads, head_dim), dtype)
    hlo = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, q, q).compile().as_text()
    return "cudnn-fused" if "cudnn$fmha" in hlo or "__cudnn" in hlo else "xla"


def profile_top_ops(run, top=15):
    """Runs `run()` under the JAX profiler; returns the device ops by time.

    Returns a dict: `line` (the trace line summed: XLA's "XLA Ops" line when
    there is one, else every kernel stream), `busy_ms` (device time summed
    over that line), `wall_ms`, and `ops`: the `top` names with their
    milliseconds and share of `busy_ms` (every op when `top` is None). On a
    CPU it reads the host's XLA threads instead. Used to decide what to optimize (METHOD.md: profile
    first).
    """
    import collections
    import glob
    import tempfile

    import jax

    trace_dir = tempfile.mkdtemp(prefix="kerasllm_trace_")
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir):
        run()
    wall_ms = 1e3 * (time.perf_counter() - start)
    path = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0]
    data = jax.profiler.ProfileData.from_file(path)
    planes = [p for p in data.planes if p.name.startswith("/device:GPU")]
    if not planes:
        planes = [p for p in data.planes if p.name == "/host:CPU"]
    totals, line_used = collections.Counter(), None
    for plane in planes[:1]:
        lines = {line.name: line for line in plane.lines}
        if "XLA Ops" in lines:
            chosen = [lines["XLA Ops"]]
        else:
            chosen = [l for n, l in lines.items() if "Stream" in n or "XLA" in n] or list(lines.values())
        line_used = ", ".join(l.name for l in chosen)
        for line in chosen:
            for event in line.events:
                if not event.name.startswith("ThunkExecutor"):  # CPU wrappers
                    totals[event.name] += event.duration_ns / 1e6
    busy = sum(totals.values())
    return {
        "line": line_used,
        "busy_ms": busy,
        "wall_ms": wall_ms,
        "ops": [
            {"name": name, "ms": ms, "share": ms / busy if busy else None}
            for name, ms in totals.most_common(top)
        ],
    }
