"""What every benchmark records about the machine it ran on, and the JSON/table output.

Shared by ``input_pipeline.py`` and ``training_throughput.py`` (run as scripts from the
repository root, ``benchmarks/`` is on ``sys.path``). Imports no TensorFlow at module
level, so a script can set its environment variables first.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Dict, List, Sequence


def cpu_model() -> str:
    """``lscpu``'s model name (falls back to ``platform.processor()``)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def ram_gib() -> float:
    """Physical memory in GiB."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return float("nan")


def load_average() -> float:
    """The 1-minute load average (how busy the CPU was: compare it with the core count)."""
    return round(os.getloadavg()[0], 2)


def wait_until_quiet(threshold: float, max_seconds: float, log=print) -> float:
    """Sleep until the 1-minute load average is below ``threshold`` (at most ``max_seconds``).

    Returns:
        The load average when the wait ended (above ``threshold`` if it timed out).
    """
    deadline = time.monotonic() + max_seconds
    load = load_average()
    while load >= threshold and time.monotonic() < deadline:
        log(f"waiting for a quiet machine: load average {load} >= {threshold}")
        time.sleep(min(30.0, max(1.0, deadline - time.monotonic())))
        load = load_average()
    return load


def busy_cpu_seconds() -> float:
    """CPU seconds spent busy (not idle or waiting for I/O) by all processes since boot, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds used by this process (all its threads) and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMeter:
    """How much of the CPU other processes took while a measurement ran.

    Load averages lag and count this process too; this counts the others directly:
    ``others_share`` = (busy CPU seconds of the whole machine - this process's) /
    (cores x wall seconds). A quiet machine gives about 0; 0.5 means other work had
    half of the cores, and the measurement is not to be trusted.

    Example:
        >>> with CpuMeter() as meter:
        ...     pass
        >>> sorted(meter.result())
        ['others_cpu_s', 'others_share', 'own_cpu_s', 'wall_s']
    """

    def __enter__(self):
        self._wall, self._busy, self._own = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._wall
        self.own = own_cpu_seconds() - self._own
        self.others = max(0.0, busy_cpu_seconds() - self._busy - self.own)
        return False

    def result(self) -> Dict[str, float]:
        cores = os.cpu_count() or 1
        share = self.others / (cores * self.wall) if self.wall > 0 else 0.0
        return {"wall_s": round(self.wall, 1), "own_cpu_s": round(self.own, 1),
                "others_cpu_s": round(self.others, 1), "others_share": round(share, 3)}


def machine_info() -> Dict[str, Any]:
    """CPU model, cores, RAM, bf16 support, Python/TensorFlow/Keras versions, load average now."""
    import keras
    import tensorflow as tf

    from tfseg.precision import cpu_bf16_flags

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": ram_gib(),
        "cpu_bf16_flags": cpu_bf16_flags(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (on by default)"),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "load_average_at_start": load_average(),
    }


def command_line() -> str:
    """The command that reproduces this run (relative to the repository root)."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]))
    return " ".join(["python", script, *sys.argv[1:]])


def markdown_table(rows: Sequence[Dict[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` (dicts) with ``columns``; ``None`` prints as ``-``."""

    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def header(report: Dict[str, Any]) -> str:
    """The lines above a table: the command and the machine."""
    m = report["machine"]
    return (
        f"`{report['command']}`\n\n"
        f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, bf16 flags {m['cpu_bf16_flags'] or 'none'}; "
        f"TensorFlow {m['tensorflow']}, Keras {m['keras']}; load average {m['load_average_at_start']} at start, "
        f"{report.get('load_average_at_end')} at end."
    )


def write_json(path: str, report: Dict[str, Any]) -> None:
    """Write ``report`` to ``path`` through a temporary file (never a half-written JSON)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def rounded(value: float, digits: int = 3) -> float:
    """``value`` to ``digits`` significant digits (JSON stays readable, no false precision)."""
    return float(f"{value:.{digits}g}")


def median(values: List[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def run_benchmark(parse_args, measure, markdown, argv=None) -> int:
    """A benchmark script's ``main``: parse, wait for a quiet machine if ``--wait-quiet``, measure,
    print the Markdown report and write its JSON to ``--out``."""
    args = parse_args(argv)
    if getattr(args, "wait_quiet", None) is not None:
        wait_until_quiet(args.wait_quiet, 1800, log=lambda m: print(m, file=sys.stderr, flush=True))
    report = measure(args)
    print(markdown(report))
    if args.out:
        write_json(args.out, report)
    return 0
