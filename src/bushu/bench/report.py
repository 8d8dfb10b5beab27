"""Reporting load results: a table (rich) and a PNG latency plot (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.table import Table

from bushu.bench.loadgen import LoadResult


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # NaN when nothing succeeded


def _errors(result: LoadResult) -> str:
    if not result.errors:
        return "0"
    detail = ", ".join(f"{k}×{v}" for k, v in sorted(result.errors.items()))
    return f"{result.error_count} ({detail})"


def result_table(results: Sequence[tuple[str, LoadResult]], *, baseline: str | None = None,
                 title: str | None = None) -> Table:
    """One row per (name, result): req/s, p50/p90/p99/max, errors, and ratios to `baseline`."""
    columns = ["", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"]
    base = dict(results).get(baseline) if baseline else None
    if base is not None:
        columns += [f"req/s ÷ {baseline}", f"p99 ÷ {baseline}"]
    table = Table(*columns, title=title)
    for name, r in results:
        s = r.summary()
        row = [name, f"{r.requests:,}", f"{s['req_per_s']:,.0f}", _ms(s["p50_ms"]), _ms(s["p90_ms"]),
               _ms(s["p99_ms"]), _ms(s["max_ms"]), _errors(r)]
        if base is not None:
            b = base.summary()
            rps = s["req_per_s"] / b["req_per_s"] if b["req_per_s"] else float("nan")
            p99 = s["p99_ms"] / b["p99_ms"] if b["p99_ms"] else float("nan")
            row += [f"{rps:.2f}×", f"{p99:.2f}×"]
        table.add_row(*row)
    for column in table.columns[1:]:
        column.justify = "right"
    return table


def markdown_table(results: Sequence[tuple[str, LoadResult]], *, baseline: str | None = None) -> str:
    """The same table as `result_table`, as Markdown (for results kept in files)."""
    table = result_table(results, baseline=baseline)
    header = [str(c.header) or "server" for c in table.columns]
    rows = [[str(cell) for cell in column.cells] for column in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in zip(*rows)]
    return "\n".join(lines) + "\n"


def plot_latency(results: Sequence[tuple[str, LoadResult]], path: Path, *, title: str = "") -> Path:
    """Write a PNG: latency over time (left) and the latency distribution as a CDF (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (over_time, cdf) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for name, r in results:
        if not r.requests:
            continue
        ms = r.latencies_ns / 1e6
        step = max(1, ms.size // 20_000)  # a scatter of every point past that says nothing more
        over_time.scatter(r.started_s[::step], ms[::step], s=2, alpha=0.4, label=name, rasterized=True)
        ordered = np.sort(ms)
        cdf.plot(ordered, np.arange(1, ordered.size + 1) / ordered.size, label=f"{name} (p99 {r.percentile_ms(99):.1f} ms)")
    over_time.set(xlabel="request start (s into the measured window)", ylabel="latency (ms)", title="latency over time")
    over_time.set_ylim(bottom=0)
    cdf.set(xlabel="latency (ms)", ylabel="fraction of requests", title="latency CDF", xscale="log")
    for q in (0.5, 0.9, 0.99):
        cdf.axhline(q, color="grey", lw=0.5, ls=":")
    for ax in (over_time, cdf):
        ax.grid(alpha=0.3)
        if len(results) > 1 or ax is cdf:
            ax.legend(loc="best", fontsize="small", markerscale=4)
    if title:
        fig.suptitle(title, fontsize="medium")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
