"""fanout.png from results.json: wall time vs N per tool (median, min–max bars, log scale), and
beside it wall time vs RTT at the latency runs' N (when the run had them).

Run with the bench venv's Python (matplotlib lives there):
    bench/.venv/bin/python bench/plot.py bench/results/results.json bench/results/fanout.png
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

STYLE = {  # tool key: (label, colour, marker, linestyle)
    "ansible_first": ("ansible-core playbook, first run (forks=N)", "#d62728", "s", "-"),
    "pyinfra_first": ("pyinfra deploy, first run (--parallel N)", "#ff7f0e", "v", "-"),
    "ours_first": ("ours: clients.trust, first run", "#1f77b4", "o", "-"),
    "ours_noop": ("ours: clients.trust, no-op rerun", "#1f77b4", "o", "--"),
    "asyncssh_job": ("asyncssh floor: connect + bare job", "#2ca02c", "^", "-"),
    "asyncssh_connect1": ("asyncssh floor: connect + one command", "#2ca02c", "^", "--"),
    "ours_first_parallel10": ("ours: first run, --parallel 10", "#9467bd", "D", ""),
}


def main(src: str, dest: str) -> None:
    data = json.loads(Path(src).read_text())
    fanout = data["fanout"]
    ns = data["config"]["ns"]
    lat = data.get("latency")
    if lat:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(15, 6.5), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    else:
        fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    labels: dict[int, list] = {}
    for tool, (label, colour, marker, ls) in STYLE.items():
        if tool not in fanout:
            continue
        cells = sorted(((int(n), c["seconds"]) for n, c in fanout[tool].items() if int(n) in ns), key=lambda x: x[0])
        xs = [n for n, _ in cells]
        med = [c["median"] for _, c in cells]
        err = [[c["median"] - c["min"] for _, c in cells], [c["max"] - c["median"] for _, c in cells]]
        ax.errorbar(xs, med, yerr=err, label=label, color=colour, marker=marker, linestyle=ls or "none",
                    capsize=4, linewidth=1.8, markersize=7)
        for x, y in zip(xs, med):
            labels.setdefault(x, []).append((y, f"{y:.2f}s" if y < 10 else f"{y:.0f}s", colour))
    for x, items in labels.items():      # value labels right of the points, spread apart vertically
        placed = 0.0
        for y, text, colour in sorted(items):
            placed = max(y, placed * 1.2)
            left = x == min(ns)          # first column: labels on the left, clear of the lines
            ax.annotate(text, (x, y), xytext=(x / 1.09 if left else x * 1.09, placed), textcoords="data",
                        fontsize=8, color=colour, va="center", ha="right" if left else "left")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(min(ns) / 1.6, max(ns) * 1.45)
    ax.set_xticks(ns)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo = min(c["seconds"]["min"] for k, t in fanout.items() if "@" not in k for c in t.values())
    hi = max(c["seconds"]["max"] for k, t in fanout.items() if "@" not in k for c in t.values())
    ax.set_yticks([t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if lo / 1.6 <= t <= hi * 1.6])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("clients N (--parallel N; ansible forks = N)")
    ax.set_ylabel("wall seconds, whole command (median, bars min–max)")
    env = data.get("env", {})
    ax.set_title(f"registry-tls trust fan-out vs ansible-core and an asyncssh floor\n"
                 f"{env.get('cpus', '?')} CPUs, all hosts on one machine (network-namespace lab)", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8.5, loc="upper left")
    if lat:
        rtts, n = lat["rtts"], str(lat["n"])
        for tool, (label, colour, marker, ls) in STYLE.items():
            cells = [(r, fanout.get(f"{tool}@rtt{r}", {}).get(n)) for r in rtts]
            cells = [(r, c["seconds"]) for r, c in cells if c]
            if not cells:
                continue
            ax2.errorbar([r for r, _ in cells], [c["median"] for _, c in cells],
                         yerr=[[c["median"] - c["min"] for _, c in cells], [c["max"] - c["median"] for _, c in cells]],
                         label=label, color=colour, marker=marker, linestyle=ls or "none", capsize=4, linewidth=1.8)
        ax2.set_yscale("log")
        ax2.set_xticks(rtts)
        ticks = [c["seconds"] for k, t in fanout.items() if "@rtt" in k for c in t.values()]
        lo2, hi2 = min(c["min"] for c in ticks), max(c["max"] for c in ticks)
        ax2.set_yticks([t for t in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if lo2 / 1.6 <= t <= hi2 * 1.6])
        ax2.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax2.yaxis.set_minor_formatter(NullFormatter())
        ax2.set_xlabel(f"round-trip time, ms (relay in each client; N={n})")
        ax2.set_ylabel("wall seconds (median, bars min–max)")
        ax2.set_title(f"the same job at N={n} over emulated latency", fontsize=11)
        ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(dest)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
