"""Where a benchmark ran, and how its rows land in ``benchmarks/RESULTS.md``.

RESULTS.md has one ``## <hardware>`` section per machine and, inside it, one
``### <benchmark and settings>`` table per benchmark set-up; a later run with
the same heading, title and columns appends its rows to that table, so
results accumulate with the hardware named.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from pathlib import Path

import jax

RESULTS = Path(__file__).with_name("RESULTS.md")
PREAMBLE = [
    "# Benchmark results",
    "",
    "Written by the scripts in `benchmarks/` (see its README); one section per machine.",
    "Never edit a number by hand: rerun the benchmark.",
]


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (or what `platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(note: str = "") -> str:
    """Section heading naming the machine, e.g. ``CPU (shared 2-core AMD EPYC)``.

    Args:
      note: free text put before the core count (``shared``), e.g. that other
        jobs were running.
    """
    prefix = f"{note} " if note else ""
    if jax.default_backend() == "cpu":
        # The machine's cores, not those a --threads run is pinned to.
        return f"CPU ({prefix}{os.cpu_count()}-core {cpu_model()})"
    device = jax.devices()[0]
    return f"{device.platform.upper()} ({prefix}{device.device_kind})"


def environment() -> dict:
    """Versions, backend, device and date that every JSON record carries."""
    return {
        "date": datetime.date.today().isoformat(),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "cpu_model": cpu_model(),
        "cpus_visible": len(os.sched_getaffinity(0)),
    }


def mean_std(values: list[float]) -> dict:
    """``{"mean", "std", "all"}`` (std 0 for a single value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "all": values}


def write_json(records, path: str | None) -> None:
    """Prints the records as JSON and, if `path` is given, writes them there."""
    text = json.dumps(records, indent=2)
    print(text)
    if path:
        Path(path).write_text(text + "\n")


def _table_end(lines: list[str], start: int) -> int:
    """Index just past the table whose header line is ``lines[start]``."""
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return end


def _section_bounds(lines: list[str], heading: str) -> tuple[int, int] | None:
    """``(first, end)`` line indices of ``## heading``'s body, or None."""
    try:
        first = lines.index(f"## {heading}") + 1
    except ValueError:
        return None
    end = next((i for i in range(first, len(lines)) if lines[i].startswith("## ")), len(lines))
    return first, end


def _insert_at(lines: list[str], heading: str, title: str, header: list[str]) -> int | None:
    """Where rows of an existing matching table go, or None if there is none."""
    bounds = _section_bounds(lines, heading)
    if bounds is None:
        return None
    first, end = bounds
    header_line = _row(header)
    for i in range(first, end):
        if lines[i] == f"### {title}":
            j = i + 1
            while j < end and not lines[j].startswith("|"):
                j += 1
            if j < end and lines[j] == header_line:
                return _table_end(lines, j)
    return None


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def record(
    heading: str, title: str, header: list[str], rows: list[list], path: Path = RESULTS
) -> None:
    """Appends `rows` to the table `title` of section `heading` in `path`.

    A missing file, section or table (or one with other columns) is created
    at the end of the file / section.
    """
    lines = path.read_text().splitlines() if path.exists() else list(PREAMBLE)
    body = [_row(r) for r in rows]
    at = _insert_at(lines, heading, title, header)
    if at is None:
        table = ["", f"### {title}", "", _row(header), _row(["---"] * len(header)), *body]
        bounds = _section_bounds(lines, heading)
        if bounds is None:
            lines += ["", f"## {heading}", *table]
        else:
            end = bounds[1]
            while end > bounds[0] and not lines[end - 1].strip():
                end -= 1
            lines[end:end] = table
    else:
        lines[at:at] = body
    path.write_text("\n".join(lines) + "\n")
