"""Quality side by side: kerasllm's GPT and nanoGPT on the same bytes and batches.

Trains, one after the other and on the same data:

- `nanogpt`: nanoGPT's model (karpathy/nanoGPT `model.py`: pre-norm GPT-2
  block, exact GELU, tied embeddings, biases, N(0, 0.02) init with the two
  residual projections at 0.02 / sqrt(2 * n_layer)), written out below in
  PyTorch, only where PyTorch is installed;
- `kerasllm`: `kerasllm.models.GPT` of the same shape, every weight drawn
  from its own initializer;
- `kerasllm_shared_init` (with `--shared-initializer`, on by default in
  `--arms`): the same `GPT` built as before each weight had its own
  initializer: one unseeded `RandomNormal` shared by every sublayer, so all
  blocks start identical and the position table equals the first rows of
  the token table.

Shape: the `baby` preset (6 layers, 6 heads, width 384, context 256) on a
byte-level vocabulary (256 ids, UTF-8 bytes), dropout 0. Data: the `.py`
files of the running Python's standard library (sorted by path, the first
`--max-mb` MB), the first 90% for training and the rest for validation.
Every model sees the same batches (random windows picked by one NumPy
generator, nanoGPT's `get_batch`) and the same schedule (nanoGPT's
shakespeare-char settings: AdamW 1e-3, betas 0.9/0.99, eps 1e-8, weight
decay 0.1 on matrices, global-norm clip 1.0, 100 warmup steps, cosine to
1e-4), in mixed bfloat16. Validation loss is the mean over the same
`--eval-batches` fixed batches for every model.

Usage (a GPU machine; benchmarks/README.md says how to bring the Keras
wheels; Keras runs on JAX):

    . benchmarks/gpu_env.sh
    python3 benchmarks/nanogpt_quality.py --steps 2000 --output-dir $OUT
    # the same with other weights and batches, to see the seed-to-seed spread:
    python3 benchmarks/nanogpt_quality.py --seed 2 --tag seed2 --output-dir $OUT

    # CPU smoke test (TensorFlow or JAX backend, no PyTorch needed):
    python benchmarks/nanogpt_quality.py --steps 4 --eval-every 2 \
        --batch-size 2 --eval-batches 2 --max-mb 1 --no-write

Prints a table and writes `benchmarks/results/nanogpt_quality_<device>.json`.
"""

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import sysconfig
import time

ARMS = ("nanogpt", "kerasllm", "kerasllm_shared_init")
SHAPE = dict(num_layers=6, num_heads=6, hidden_dim=384, context_length=256)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS,
                        help="Models to train. Defaults to all three.")
    parser.add_argument("--steps", type=int, default=2000, help="Training steps. Defaults to 2000.")
    parser.add_argument("--batch-size", type=int, default=64, help="Defaults to 64 (nanoGPT's).")
    parser.add_argument("--eval-every", type=int, default=250, help="Defaults to 250 steps.")
    parser.add_argument("--eval-batches", type=int, default=20, help="Defaults to 20.")
    parser.add_argument("--max-mb", type=float, default=16.0,
                        help="Bytes of the standard library to read, in MB. Defaults to 16.")
    parser.add_argument("--seed", type=int, default=1337, help="Data and weight seed. Defaults to 1337.")
    parser.add_argument("--output-dir", default="benchmarks/results")
    parser.add_argument("--tag", default="",
                        help="Appended to the result file name, e.g. seed2.")
    parser.add_argument("--no-write", action="store_true", help="Print only.")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- data


def read_corpus(max_bytes):
    """The standard library's `.py` files, sorted by path, as one byte array."""
    import numpy as np

    root = sysconfig.get_paths()["stdlib"]
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "dist-packages", "__pycache__"))
        paths += [os.path.join(folder, f) for f in files if f.endswith(".py")]
    chunks, total = [], 0
    for path in sorted(paths):
        with open(path, "rb") as f:
            data = f.read()
        chunks.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    data = b"".join(chunks)[:max_bytes]
    return np.frombuffer(data, dtype=np.uint8).astype(np.int32), {
        "source": f"*.py under {root} (Python {sys.version.split()[0]})",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def batches(data, count, batch_size, context, rng):
    """`count` batches of random windows: inputs and next-byte targets `(N, B, T)`."""
    import numpy as np

    starts = rng.integers(0, len(data) - context - 1, size=(count, batch_size))
    windows = data[starts[..., None] + np.arange(context + 1)]  # (N, B, T + 1)
    return windows[..., :-1], windows[..., 1:]


def learning_rate(step, steps, peak=1e-3, floor=1e-4, warmup=100):
    """nanoGPT's schedule: linear warmup, then cosine down to `floor`."""
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    progress = min((step - warmup) / max(steps - warmup, 1), 1.0)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - floor)


# ---------------------------------------------------------------- kerasllm


@contextlib.contextmanager
def shared_initializer():
    """Builds models as before each weight had its own initializer.

    `clone_initializer` becomes the identity in every module that calls it,
    so the one `RandomNormal` made in `GPT.__init__` (and the residual one)
    is handed, unchanged, to every sublayer: the old behaviour.
    """
    import kerasllm.layers.causal_self_attention as attention
    import kerasllm.layers.feed_forward as feed_forward
    import kerasllm.layers.token_and_position_embedding as embedding
    import kerasllm.layers.transformer_block as block
    import kerasllm.models.gpt as gpt

    modules = (attention, feed_forward, embedding, block, gpt)
    saved = [module.clone_initializer for module in modules]
    for module in modules:
        module.clone_initializer = lambda initializer: initializer
    try:
        yield
    finally:
        for module, original in zip(modules, saved):
            module.clone_initializer = original


def train_kerasllm(arm, train, val, args):
    import keras
    import numpy as np
    from keras import ops

    from kerasllm.models import GPT, GPTConfig
    from kerasllm.training import AdamW, LanguageModelLoss

    class Schedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = ops.cast(step, "float32")
            warm = 1e-3 * (step + 1) / 101.0
            progress = ops.minimum((step - 100) / max(args.steps - 100, 1), 1.0)
            cosine = 1e-4 + 0.5 * (1 + ops.cos(math.pi * progress)) * (1e-3 - 1e-4)
            return ops.where(step < 100, warm, cosine)

    keras.utils.set_random_seed(args.seed)
    config = GPTConfig(vocab_size=256, activation="gelu_exact", dropout=0.0, **SHAPE)
    scope = shared_initializer() if arm == "kerasllm_shared_init" else contextlib.nullcontext()
    with scope:
        model = GPT(config, dtype="mixed_bfloat16")
    first = [ops.convert_to_numpy(b.attention.qkv.kernel) for b in model.blocks[:2]]
    blocks_identical = bool(np.array_equal(*first))
    model.compile(
        optimizer=AdamW(learning_rate=Schedule(), weight_decay=0.1, beta_1=0.9,
                        beta_2=0.99, epsilon=1e-8, global_clipnorm=1.0),
        loss=LanguageModelLoss(),
    )
    x, y = train
    vx, vy = val
    flat = lambda a: a.reshape(-1, a.shape[-1])
    curve, train_seconds = [], 0.0
    for start in range(0, args.steps, args.eval_every):
        stop = min(start + args.eval_every, args.steps)
        began = time.perf_counter()
        history = model.fit(flat(x[start:stop]), flat(y[start:stop]),
                            batch_size=args.batch_size, shuffle=False, verbose=0)
        train_seconds += time.perf_counter() - began
        val_loss = model.evaluate(flat(vx), flat(vy), batch_size=args.batch_size, verbose=0)
        curve.append({"step": stop, "train_loss": float(history.history["loss"][-1]),
                      "val_loss": float(val_loss)})
        print(f"  {arm} step {stop}: val {val_loss:.4f}", flush=True)
    return {"curve": curve, "train_seconds": train_seconds,
            "blocks_start_identical": blocks_identical,
            "parameters": model.count_params()}


# ---------------------------------------------------------------- nanoGPT


def nanogpt_model(torch, vocab_size, n_layer, n_head, n_embd, block_size):
    """nanoGPT's GPT (model.py), dropout 0 and biases on, as a PyTorch module."""
    nn, F = torch.nn, torch.nn.functional

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(n_embd, dim=2)
            q = q.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, nh, T, hs)
            k = k.view(B, T, n_head, C // n_head).transpose(1, 2)
            v = v.view(B, T, n_head, C // n_head).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(n_embd)
            self.mlp = nn.Sequential(
                nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd)
            )

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab_size, n_embd)
            self.wpe = nn.Embedding(block_size, n_embd)
            self.h = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
            self.wte.weight = self.lm_head.weight  # tied
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, mean=0.0, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.Embedding):
                    nn.init.normal_(module.weight, mean=0.0, std=0.02)
            for block in self.h:  # the residual projections, scaled
                for proj in (block.attn.c_proj, block.mlp[2]):
                    nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

        def forward(self, idx, targets):
            pos = torch.arange(idx.size(1), device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))

    return GPT()


def train_nanogpt(train, val, args):
    import torch

    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = nanogpt_model(torch, 256, SHAPE["num_layers"], SHAPE["num_heads"],
                          SHAPE["hidden_dim"], SHAPE["context_length"]).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), eps=1e-8,
                                  fused=device == "cuda")
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16)
    x, y = (torch.from_numpy(a).long() for a in train)
    vx, vy = (torch.from_numpy(a).long() for a in val)
    curve, train_seconds = [], 0.0
    for start in range(0, args.steps, args.eval_every):
        stop = min(start + args.eval_every, args.steps)
        model.train()
        if device == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        for step in range(start, stop):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, args.steps)
            with autocast:
                loss = model(x[step].to(device), y[step].to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        train_loss = float(loss.detach())
        train_seconds += time.perf_counter() - began
        model.eval()
        with torch.no_grad(), autocast:
            val_loss = sum(float(model(a.to(device), b.to(device))) for a, b in zip(vx, vy)) / len(vx)
        curve.append({"step": stop, "train_loss": train_loss, "val_loss": val_loss})
        print(f"  nanogpt step {stop}: val {val_loss:.4f}", flush=True)
    return {"curve": curve, "train_seconds": train_seconds,
            "parameters": sum(p.numel() for p in model.parameters())}


# ---------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.common import device_info

    data, corpus = read_corpus(int(args.max_mb * 1e6))
    split = int(0.9 * len(data))
    rng = np.random.default_rng(args.seed)
    context = SHAPE["context_length"]
    train = batches(data[:split], args.steps, args.batch_size, context, rng)
    val = batches(data[split:], args.eval_batches, args.batch_size, context, rng)
    device = device_info()
    results = {}
    for arm in args.arms:
        if arm == "nanogpt":
            try:
                import torch  # noqa: F401
            except ImportError as error:
                print(f"nanogpt skipped: PyTorch is not importable ({error})")
                results[arm] = {"skipped": f"PyTorch is not importable: {error}"}
                continue
            results[arm] = train_nanogpt(train, val, args)
        else:
            results[arm] = train_kerasllm(arm, train, val, args)

    print(f"\n{device['name']}: {args.steps} steps of {args.batch_size} x {context} bytes; "
          f"validation loss (nats per byte) on {args.eval_batches} batches")
    print(f"{'model':<22}{'val loss':>10}{'best':>10}{'train s':>10}  curve (every {args.eval_every} steps)")
    for arm, result in results.items():
        if "skipped" in result:
            print(f"{arm:<22}  skipped: {result['skipped']}")
            continue
        losses = [point["val_loss"] for point in result["curve"]]
        print(f"{arm:<22}{losses[-1]:>10.4f}{min(losses):>10.4f}{result['train_seconds']:>10.1f}  "
              + " ".join(f"{v:.3f}" for v in losses))
        if result.get("blocks_start_identical"):
            print(f"{'':<22}(blocks 0 and 1 started with identical weights)")
    if args.no_write:
        return results
    import keras

    versions = {"keras": keras.__version__, "backend": keras.config.backend()}
    with contextlib.suppress(ImportError):
        import torch

        versions["torch"] = torch.__version__
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python " + " ".join(sys.argv),
        "benchmark": "nanogpt_quality",
        "device": device,
        "versions": versions,
        "corpus": corpus,
        "shape": {**SHAPE, "vocab_size": 256, "dropout": 0.0, "activation": "gelu_exact"},
        "steps": args.steps,
        "batch_size": args.batch_size,
        "eval_batches": args.eval_batches,
        "seed": args.seed,
        "results": results,
    }
    os.makedirs(args.output_dir, exist_ok=True)
    tag = f"_{args.tag}" if args.tag else ""
    path = os.path.join(args.output_dir, f"nanogpt_quality_{device['slug']}{tag}.json")
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
