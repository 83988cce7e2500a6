#!/usr/bin/env python3
"""U-Net training throughput on one accelerator: float32 vs mixed_float16 vs mixed_bfloat16.

Self-contained for a GPU machine with JAX and no TensorFlow: it puts the repository root on
``sys.path``, selects the JAX backend before importing Keras, builds tfseg's U-Net
(``base_filters=64, depth=4`` by default) and trains it on random device-resident data with
``model.fit``. Under JAX every train step is XLA-compiled (``jit_compile=True`` is set, and
JAX would compile anyway); the first (warm-up) steps, which include compilation, are not timed;
timing ends when the updated weights are ready on the device.

Each configuration (image size x batch x precision) runs in its own child process, so
that ``peak_bytes_in_use`` belongs to that row alone and an out-of-memory error or a crash
only marks that row. The loss is ``tfseg.losses.BCEDiceLoss`` (binary cross-entropy if that
module is missing). Results: a Markdown table on stdout and in ``OUT.md``, JSON in ``OUT``
(rewritten after every row, so a cut-off run keeps what it measured).

Usage:
    KERAS_BACKEND=jax python benchmarks/gpu_mixed_precision.py --out results/gpu.json
    python benchmarks/gpu_mixed_precision.py --quick        # tiny CPU smoke run
    python benchmarks/gpu_mixed_precision.py --sizes 256 --batches 8 16 --steps 50
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["KERAS_BACKEND"] = "jax"  # must precede the first `import keras`

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
ROW_TAG = "TFSEG_ROW_JSON "


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="image sizes (square)")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16], help="batch sizes")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per row")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (they include compilation)")
    parser.add_argument("--base-filters", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--row-timeout", type=float, default=240, help="seconds before a row is given up")
    parser.add_argument("--budget", type=float, default=None, help="seconds for all rows; later rows are skipped")
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run (32 px, batch 2, 8 filters, depth 2, 3 steps): checks the script, not the GPU")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu_mixed_precision.json"),
                        help="JSON path; the Markdown table goes next to it (.md)")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row in this process
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.steps, args.warmup = [32], [2], 3, 1
        args.base_filters, args.depth = 8, 2
    return args


# --- one row (runs in a child process) ---------------------------------------------------

def training_loss():
    """(loss, name): tfseg's BCE+Dice when available, else Keras binary cross-entropy."""
    try:
        from tfseg.losses import BCEDiceLoss
    except ModuleNotFoundError as error:
        if error.name != "tfseg.losses":
            raise
        return "binary_crossentropy", "binary_crossentropy"
    return BCEDiceLoss(), "bce_dice"


def measure_row(row):
    """Train the U-Net of ``row`` and return its timings and peak device memory."""
    import jax
    import jax.numpy as jnp
    import keras

    from tfseg.models import build_model

    keras.mixed_precision.set_global_policy(row["precision"])
    keras.utils.set_random_seed(0)
    model = build_model("unet", image_size=row["size"], base_filters=row["base_filters"], depth=row["depth"])
    loss, loss_name = training_loss()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=True)

    # random but learnable data, created on the device: no host-to-device copies in the timing
    shape = (row["batch"], row["size"], row["size"], 3)
    images = jax.random.uniform(jax.random.PRNGKey(0), shape, dtype=jnp.float32)
    masks = (images[..., :1] > 0.5).astype(jnp.float32)

    def batches():
        while True:
            yield images, masks

    def train(steps):
        start = time.perf_counter()
        history = model.fit(batches(), steps_per_epoch=steps, epochs=1, verbose=0)
        jax.block_until_ready([variable.value for variable in model.trainable_variables])
        return time.perf_counter() - start, history.history["loss"][-1]

    warmup_seconds, _ = train(row["warmup"])
    seconds, last_loss = train(row["steps"])
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    return dict(
        row,
        loss=loss_name,
        last_loss=float(last_loss),
        params=int(model.count_params()),
        warmup_seconds=round(warmup_seconds, 2),
        step_ms=round(1000 * seconds / row["steps"], 3),
        images_per_second=round(row["batch"] * row["steps"] / seconds, 1),
        peak_bytes=stats.get("peak_bytes_in_use"),
        device_kind=device.device_kind,
        device_platform=device.platform,
        device_count=jax.device_count(),
        jax_version=jax.__version__,
        keras_version=keras.__version__,
    )


def run_row_here(row_json):
    """Child entry point: print the row's result (or its error) as one tagged JSON line."""
    row = json.loads(row_json)
    try:
        result = measure_row(row)
    except Exception as error:  # an OOM or XLA error marks this row only
        result = dict(row, error=f"{type(error).__name__}: {first_line(str(error))}")
    print(ROW_TAG + json.dumps(result), flush=True)


def first_line(text, limit=240):
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line[:limit]


# --- the parent: rows in child processes, table, JSON ----------------------------------

def run_row_in_child(row, timeout):
    """The row's result dict; ``error`` set when the child failed, crashed or timed out."""
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--row", json.dumps(row)],
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return dict(row, error=f"timed out after {timeout:.0f} s")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(ROW_TAG):
            return json.loads(line[len(ROW_TAG):])
    tail = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no output"]
    return dict(row, error=f"exit code {done.returncode}: {first_line(tail[0])}")


def with_speedups(rows):
    """Adds ``speedup_vs_float32`` (images/s ratio) to rows whose float32 twin succeeded."""
    baseline = {
        (r["size"], r["batch"]): r["images_per_second"]
        for r in rows if r["precision"] == "float32" and "error" not in r
    }
    for r in rows:
        base = baseline.get((r["size"], r["batch"]))
        if base and "error" not in r:
            r["speedup_vs_float32"] = round(r["images_per_second"] / base, 2)
    return rows


def describe(meta, rows):
    """Markdown: a header naming the card, software and settings, then one row per configuration."""
    done = next((r for r in rows if "error" not in r), {})
    lines = [
        f"### tfseg U-Net training throughput, JAX backend, {meta['date']}",
        "",
        f"- device: {done.get('device_kind', '?')} ({done.get('device_platform', '?')}, "
        f"{done.get('device_count', '?')} visible); JAX {done.get('jax_version', '?')}, "
        f"Keras {done.get('keras_version', '?')}, Python {meta['python']}",
        f"- model: tfseg U-Net, base_filters={meta['base_filters']}, depth={meta['depth']}, "
        f"{done.get('params', 0):,} parameters; loss {done.get('loss', '?')}; Adam",
        f"- {meta['steps']} timed steps after {meta['warmup']} warm-up steps (those include XLA "
        "compilation); jit_compile=True (under JAX every step is XLA-compiled anyway); "
        "random device-resident data",
        f"- command: `{meta['command']}`",
        "",
        "| image | batch | precision | images/s | step ms | peak memory GiB | speed-up vs float32 | warm-up s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {r['size']}x{r['size']} | {r['batch']} | {r['precision']} "
        if "error" in r:
            lines.append(head + f"| {r['error'].replace('|', '/')} | | | | |")
            continue
        peak = f"{r['peak_bytes'] / 2**30:.2f}" if r.get("peak_bytes") else "n/a"
        speedup = f"{r['speedup_vs_float32']:.2f}x" if "speedup_vs_float32" in r else "n/a"
        lines.append(
            head + f"| {r['images_per_second']:.1f} | {r['step_ms']:.1f} | {peak} | {speedup} "
            f"| {r['warmup_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_atomically(path, text):
    """Write ``text`` to ``path`` via a temporary file and rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(temp, path)


def main(argv=None):
    args = parse_args(argv)
    if args.row:
        return run_row_here(args.row)
    out = Path(args.out)
    meta = dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        python=platform.python_version(),
        host=platform.node(),
        command="python " + " ".join([os.path.relpath(__file__, REPO), *sys.argv[1:]]),
        steps=args.steps, warmup=args.warmup, base_filters=args.base_filters, depth=args.depth,
    )
    plan = [
        dict(size=size, batch=batch, precision=precision, steps=args.steps, warmup=args.warmup,
             base_filters=args.base_filters, depth=args.depth)
        for size in args.sizes for batch in args.batches for precision in args.precisions
    ]
    started, rows = time.monotonic(), []
    for row in plan:
        left = None if args.budget is None else args.budget - (time.monotonic() - started)
        if left is not None and left < 10:
            rows.append(dict(row, error="skipped: --budget spent"))
        else:
            rows.append(run_row_in_child(row, min(args.row_timeout, left or args.row_timeout)))
        last = rows[-1]
        print(f"[{time.monotonic() - started:6.0f} s] {last['size']}px batch {last['batch']} "
              f"{last['precision']}: " + (last.get("error") or f"{last['images_per_second']} images/s"),
              file=sys.stderr, flush=True)
        write_atomically(out, json.dumps({"meta": meta, "rows": with_speedups(rows)}, indent=2))
    table = describe(meta, with_speedups(rows))
    write_atomically(out.with_suffix(".md"), table)
    print(table)
    return 0 if any("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
