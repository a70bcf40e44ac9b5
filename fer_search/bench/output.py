"""What a bench run writes and prints: the figure table, the Markdown and JSON files, and the
machine and versions they were measured on."""

from __future__ import annotations

import contextlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["finite", "format_markdown", "format_table", "machine", "versions", "write_results"]


def versions() -> dict[str, str]:
    from fer_search import __version__

    out = {"fer-search": __version__, "python": platform.python_version()}
    for package in ("torch", "torchvision", "ray", "optuna", "numpy", "psutil"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def finite(value: Any) -> Any:
    """The result with NaN/inf as None, so that the JSON is standard JSON."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
    }
    with contextlib.suppress(OSError, AttributeError):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def fmt_ratio(figure: dict[str, Any]) -> str:
    ratio = figure.get("ratio")
    return "-" if ratio is None or ratio != ratio else f"{ratio:.2f}"


def fmt_met(figure: dict[str, Any]) -> str:
    if "error" in figure:
        return "ERROR"
    return {True: "yes", False: "no", None: "-"}[figure.get("met")]


def table_rows(figures: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["figure", "arch", "measured", "ratio", "goal", "met"]]
    for f in figures:
        measured = f.get("summary") or f"error: {f.get('error', '')}"[:70]
        rows.append([f["figure"], f.get("arch", ""), measured, fmt_ratio(f), f.get("goal") or "-",
                     fmt_met(f)])  # fmt: skip
    return rows


def format_table(figures: list[dict[str, Any]]) -> str:
    rows = table_rows(figures)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)  # fmt: skip


def format_markdown(result: dict[str, Any]) -> str:
    m, v = result["machine"], result["versions"]
    title = "fer-search bench" + (" --quick" if result["quick"] else "")
    title += "".join(f" --only {group}" for group in result.get("only") or [])
    lines = [
        f"# {title}",
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']} ({result['wall_s']:.0f} s)",
        f"- data: {result['data']}",
        f"- machine: {m['platform']}; {m['cpu_count']} CPUs ({m['cpu']}); torch threads "
        f"{m['torch_threads']}; device {m['device']} ({m['device_name']}); load average "
        f"{m.get('load_average_at_start', '?')} at start, {m.get('load_average_at_end', '?')} "
        "at end",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "",
    ]
    rows = table_rows(result["figures"])
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "---|" * len(rows[0]))
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows[1:]]
    notes = [f"- {f['figure']}: {f['note']}" for f in result["figures"] if f.get("note")]
    notes += [f"- {note}" for note in result["notes"]]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", f"Raw measurements: `{result['json_name']}`.", ""]
    return "\n".join(lines)


def write_results(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """`bench[-quick].{json,md}`; a run of some figure groups (`--only asha`) writes
    `bench[-quick]-asha.*`, so it never replaces the whole run's files."""
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench-quick" if result["quick"] else "bench"
    if result.get("only"):
        stem += "-" + "-".join(result["only"])
    result["json_name"] = f"{stem}.json"
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=2, default=str, allow_nan=False) + "\n")
    md_path.write_text(format_markdown(result))
    return json_path, md_path
