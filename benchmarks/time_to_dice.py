"""Time to Dice: how fast ``tfseg train`` reaches a test Dice, for the default and alternatives.

Each variant is a complete :func:`tfseg.training.train` run (``TrainConfig`` defaults plus the
variant's overrides) with one extra instrument: after every epoch the model of that epoch
is scored on the test split, off the clock (the time it takes is subtracted), so the curve
shows test Dice against the training wall time a user would wait. The run's own result is
still chosen by validation Dice only (``model.keras`` is the best epoch by ``val_dice``);
the per-epoch test scores are never used to stop or select anything.

With ``--cli`` the default command itself, ``tfseg train --out DIR``, is also run in a
subprocess and timed from start to exit: the number a user sees.

Run from the repository root::

    python benchmarks/time_to_dice.py --variants "default;epochs=15;epochs=12" --cli \\
        --out benchmarks/cpu_results/time_to_dice.json

A variant is ``default`` or comma-separated ``field=value`` overrides of ``TrainConfig``
(``epochs=15,lr_schedule=plateau``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from machine import command_line, header, load_average, machine_info, markdown_table, rounded, run_benchmark  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="default;epochs=15;epochs=12",
                        help="';'-separated variants: 'default' or field=value,... overrides of TrainConfig")
    parser.add_argument("--targets", default="0.9,0.95,0.97", help="test Dice levels to report the time of")
    parser.add_argument("--cli", action="store_true", help="also time the bare `tfseg train` command end to end")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                        help="wait until the 1-minute load average is below LOAD before measuring")
    parser.add_argument("--out", default=None, help="write the JSON report here")
    return parser.parse_args(argv)


def overrides_of(variant: str) -> Dict[str, Any]:
    """``"epochs=15,lr_schedule=plateau"`` -> ``{"epochs": 15, "lr_schedule": "plateau"}`` (typed as the field)."""
    from tfseg.commands.train import field_type
    from tfseg.config import TrainConfig

    if variant.strip() in ("", "default"):
        return {}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values = {}
    for item in variant.split(","):
        name, _, text = item.partition("=")
        name = name.strip()
        kind = field_type(fields[name])
        values[name] = (text.lower() in ("1", "true", "yes")) if kind is bool else kind(text)
    return values


def curve_run(overrides: Dict[str, Any]) -> Dict[str, Any]:
    """One training run with the per-epoch test curve."""
    import keras

    from tfseg.config import TrainConfig
    from tfseg.data import load_dataset
    from tfseg.training import fit, train

    class TestCurve(keras.callbacks.Callback):
        def __init__(self, config):
            super().__init__()
            self.config, self.rows, self.off_clock, self.start = config, [], 0.0, time.perf_counter()
            self.test = load_dataset(config.data, split="test", image_size=config.image_size,
                                     batch_size=config.batch_size, augment=False, shuffle=False, seed=config.seed,
                                     fractions=config.split_fractions())

        def on_epoch_end(self, epoch, logs=None):
            begin = time.perf_counter()
            scores = self.model.evaluate(self.test, verbose=0, return_dict=True)
            self.rows.append({"epoch": epoch + 1, "seconds": rounded(begin - self.start - self.off_clock, 4),
                              "val_dice": rounded(float(logs["val_dice"]), 4),
                              "test_dice": rounded(float(scores["dice"]), 4)})
            self.off_clock += time.perf_counter() - begin

        def on_train_end(self, logs=None):
            self.fit_end = time.perf_counter()

    with tempfile.TemporaryDirectory() as run_dir:
        config = TrainConfig(**overrides, out=os.path.join(run_dir, "run"))
        curve = TestCurve(config)
        curve.fit_end = None
        original = fit.make_callbacks
        fit.make_callbacks = lambda *a, **k: [curve, *original(*a, **k)]  # the instrument, nothing else
        try:
            begin = curve.start = time.perf_counter()
            metrics = train(config, verbose=0)
            end = time.perf_counter()
            total = end - begin - curve.off_clock
            after = end - (curve.fit_end or end)
        finally:
            fit.make_callbacks = original
    return {
        "curve": curve.rows,
        "test_dice": rounded(metrics["test"]["dice"], 4),
        "best_epoch": metrics["best_epoch"],
        "epochs_completed": metrics["epochs_completed"],
        "train_images_per_second": rounded(metrics["train_images_per_second"] or 0.0),
        "precision": metrics["precision"],
        "seconds_total": rounded(total, 4),
        "seconds_after_last_epoch": rounded(after, 4),
    }


def cli_run() -> Dict[str, Any]:
    """The bare ``tfseg train`` (default data, model and settings) in a subprocess, timed to its exit."""
    with tempfile.TemporaryDirectory() as run_dir:
        begin = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "tfseg", "train", "--out", os.path.join(run_dir, "run"),
                               "--verbose", "0"], capture_output=True, text=True)
        seconds = time.perf_counter() - begin
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        import json

        with open(os.path.join(run_dir, "run", "metrics.json")) as f:
            metrics = json.load(f)
    return {"seconds": rounded(seconds, 4), "test_dice": rounded(metrics["test"]["dice"], 4),
            "epochs_completed": metrics["epochs_completed"], "best_epoch": metrics["best_epoch"]}


def measure(args) -> Dict[str, Any]:
    targets = [float(t) for t in args.targets.split(",") if t]
    report: Dict[str, Any] = {"command": command_line(), "machine": machine_info(), "targets": targets,
                              "variants": []}
    for variant in [v.strip() for v in args.variants.split(";") if v.strip()]:
        result = curve_run(overrides_of(variant))
        for target in targets:
            reached = [row["seconds"] for row in result["curve"] if row["test_dice"] >= target]
            result[f"seconds_to_{target}"] = reached[0] if reached else None
        report["variants"].append({"variant": variant, **result})
        print(f"{variant}: test dice {result['test_dice']} in {result['seconds_total']} s", file=sys.stderr, flush=True)
    if args.cli:
        report["cli"] = cli_run()
    report["load_average_at_end"] = load_average()
    return report


def markdown(report: Dict[str, Any]) -> str:
    rows: List[Dict[str, Any]] = []
    baseline = report["variants"][0]["seconds_total"] if report["variants"] else None
    for v in report["variants"]:
        row = {"variant": v["variant"], "test Dice (by val)": v["test_dice"], "best epoch": v["best_epoch"],
               "epochs": v["epochs_completed"], "train img/s": v["train_images_per_second"],
               "seconds": v["seconds_total"], "after last epoch s": v["seconds_after_last_epoch"],
               f"x {report['variants'][0]['variant']}": rounded(v["seconds_total"] / baseline, 3) if baseline else None}
        for target in report["targets"]:
            row[f"s to {target}"] = v.get(f"seconds_to_{target}")
        rows.append(row)
    lines = [header(report), "", markdown_table(rows, list(rows[0]) if rows else [])]
    for v in report["variants"]:
        curve = ", ".join(f"{r['epoch']}:{r['test_dice']}@{r['seconds']:.0f}s" for r in v["curve"])
        lines += ["", f"{v['variant']} (epoch:test Dice@seconds): {curve}"]
    if "cli" in report:
        c = report["cli"]
        lines += ["", f"bare `tfseg train`: {c['seconds']} s to exit, test Dice {c['test_dice']} "
                      f"({c['epochs_completed']} epochs, best {c['best_epoch']})"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_benchmark(parse_args, measure, markdown))
