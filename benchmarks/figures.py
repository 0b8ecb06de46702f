"""The performance figures of docs/performance.md, drawn from a benchmark result
(``benchmarks/results/latest.json``): one figure per question, each contender named beside
its own bar, colours that colour-blind readers tell apart (Okabe-Ito), drawn at the width
of the docs' content column so that their text is shown at its size.

``python -m benchmarks.run`` draws them after a run; ``python -m benchmarks.run --redraw``
draws them again from the saved JSON.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Where the docs show them (docs/images/performance-<name>.png).
FIGURES = ("cpu", "tax", "command-line", "missed", "latency")

#: Okabe-Ito: distinct for the common colour-vision deficiencies, and in grey.
BLUE, SKY, ORANGE, GREY = "#0072B2", "#56B4E9", "#E69F00", "#999999"

#: How each contender is named in the figures, and its colour (blue: procobsrv's eBPF
#: source, sky blue: procobsrv's connector source, orange: the other tools).
LABELS = {
    "procobsrv-ebpf": ("procobsrv API, eBPF", BLUE),
    "procobsrv-ebpf-watch": ("procobsrv watch, eBPF", BLUE),
    "procobsrv-api": ("procobsrv API, connector", SKY),
    "procobsrv-watch": ("procobsrv watch, connector", SKY),
    "forkstat": ("forkstat", ORANGE),
    "execsnoop": ("execsnoop", ORANGE),
    "psutil-poll": ("psutil, polling every 10 ms", ORANGE),
}
#: The storm each bar shows; the thin line beside it spans every storm.
MAIN_STORM = "K=2"

#: 6.8 in at 100 dpi: 680 px, the docs' content column at a 1280 px window.
WIDTH_IN, DPI, FONT_PT = 6.8, 100, 10.5
ROW_IN = 0.42
#: Characters per line of the note under a figure.
NOTE_WIDTH = 95

Row = tuple[str, str, float | None, tuple[float, float] | None, str]


def _summary(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["scenario"], s["contender"]): s for s in result["summary"]}


def _contenders(result: dict[str, Any]) -> list[str]:
    present = {s["contender"] for s in result["summary"]}
    return [name for name in LABELS if name in present]


def _storms(result: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(s["scenario"] for s in result["summary"]))


def _bars(
    rows: Sequence[Row],
    title: str,
    note: str,
    path: Path,
    *,
    unit: str = "",
    limit: float | None = None,
    reference: tuple[float, str] | None = None,
) -> None:
    """Horizontal bars, one row per contender: its name at the left, its value at the bar's
    end, and (when given) a thin line spanning its range over every storm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": FONT_PT, "font.family": "DejaVu Sans"})
    height = 1.6 + ROW_IN * len(rows)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, height), dpi=DPI)
    values = [v for _n, _c, v, _r, _t in rows if v is not None]
    spans = [r[1] for _n, _c, _v, r, _t in rows if r is not None]
    top = limit or max([*values, *spans, 0.0]) * 1.45 or 1.0
    low = min([*values, *(r[0] for _n, _c, _v, r, _t in rows if r is not None), 0.0])
    labels = []
    for y, (_name, colour, value, span, text) in enumerate(rows):
        if value is not None:
            ax.barh(y, value, height=0.62, color=colour)
        if span is not None:
            ax.plot(span, (y, y), color="#333333", linewidth=1.2)
            ax.plot(span, (y, y), "|", color="#333333", markersize=8)
        end = max(value or 0.0, span[1] if span else 0.0)
        label = ax.text(end + top * 0.015, y, text, va="center")
        label.set_in_layout(False)  # the axis is widened for it below, not shrunk
        labels.append(label)
    if reference is not None:
        at, label = reference
        ax.axvline(at, color=GREY, linestyle="--", linewidth=1)
        ax.text(at, -0.75, f" {label}", color="#555555", fontsize=FONT_PT - 1.5, va="bottom")
    ax.set_yticks(range(len(rows)), [name for name, *_ in rows])
    ax.invert_yaxis()
    ax.set_xlim(min(low * 1.2, 0.0), top)
    ax.set_ylim(len(rows) - 0.5, -0.9 if reference else -0.5)
    ax.set_xlabel(unit)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    # Title and note span the figure (not the axes, which start after the names).
    title_in, note_lines = 0.42, textwrap.wrap(note, NOTE_WIDTH)
    note_in = 0.08 + 0.17 * len(note_lines)
    fig.text(0.015, 1 - 0.1 / height, title, fontsize=FONT_PT + 1.5, fontweight="bold", va="top")
    fig.text(0.015, 0.06 / height, "\n".join(note_lines), fontsize=FONT_PT - 1.5, color="#444444")
    fig.tight_layout(rect=(0, note_in / height, 1, 1 - title_in / height))
    # Widen the axis until every label beside a bar fits in it; ticks stop at `top`.
    ticks = [tick for tick in ax.get_xticks() if ax.get_xlim()[0] <= tick <= top]
    for _ in range(4):  # the labels' width in data units shrinks as the axis widens
        fig.canvas.draw()
        to_data = ax.transData.inverted()
        right = max(to_data.transform(label.get_window_extent())[1][0] for label in labels)
        if right <= ax.get_xlim()[1]:
            break
        ax.set_xlim(ax.get_xlim()[0], right * 1.01)
    ax.set_xticks(ticks)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _per_storm_rows(result: dict[str, Any], key: str, shown: str) -> list[Row]:
    """One row per contender: its ``key`` in the main storm (as ``shown`` formats it), and
    the range of ``key`` over every storm."""
    by = _summary(result)
    rows: list[Row] = []
    for name in _contenders(result):
        found = [by[(sc, name)][key] for sc in _storms(result) if (sc, name) in by]
        known = [v for v in found if v is not None]
        main = by[(MAIN_STORM, name)][key] if (MAIN_STORM, name) in by else None
        span = (min(known), max(known)) if len(known) > 1 else None
        label, colour = LABELS[name]
        rows.append((label, colour, main, span, "-" if main is None else shown.format(main)))
    return rows


def cpu(result: dict[str, Any], path: Path) -> None:
    _bars(
        _per_storm_rows(result, "cpu_s_per_10k", "{:.3f} s"),
        "CPU per 10,000 process events (lower is better)",
        f"Bar: the {MAIN_STORM} storm (2 spawners); line: the range over every storm. "
        "The monitor's own CPU (all threads).",
        path,
        unit="CPU seconds per 10,000 events",
    )


def tax(result: dict[str, Any], path: Path) -> None:
    _bars(
        _per_storm_rows(result, "tax_pct", "{:.1f} %"),
        "How much slower the storm runs (lower is better)",
        f"Bar: the {MAIN_STORM} storm; line: every storm. Processes/s against no monitor; "
        "a few points are noise on a shared machine.",
        path,
        unit="storm tax, % of the unmonitored rate",
    )


def command_line(result: dict[str, Any], path: Path) -> None:
    by = _summary(result)
    rows: list[Row] = []
    for name in _contenders(result):
        label, colour = LABELS[name]
        found = [by[(sc, name)]["exact_min"].get("argv") for sc in _storms(result)]
        known = [v for v in found if v is not None]
        worst = min(known) if known else None
        text = "does not report it" if worst is None else f"{worst:.1f} %"
        rows.append((label, colour, worst, None, text))
    _bars(
        rows,
        "Exact command line reported (higher is better)",
        "% of the storm's exec'd processes whose exact argv the tool reported; worst storm.",
        path,
        unit="% of exec'd processes",
        limit=100,
    )


def missed(result: dict[str, Any], path: Path) -> None:
    by = _summary(result)
    rows: list[Row] = []
    for name in _contenders(result):
        label, colour = LABELS[name]
        mine = [by[(sc, name)] for sc in _storms(result) if (sc, name) in by]
        kinds = [k for k, v in mine[0]["completeness_min"].items() if v is not None]
        worst = max(100.0 - s["completeness_min"][k] for s in mine for k in kinds)
        silent = sum(s["unaccounted"] for s in mine)
        said = "every loss counted" if silent == 0 else f"{silent:,} events missed silently"
        what = "" if len(kinds) == 3 else f" ({', '.join(kinds)} only)"
        rows.append((label, colour, worst, None, f"{worst:.2f} %{what}\n{said}"))
    _bars(
        rows,
        "Events missed (lower is better)",
        "% of the fork, exec and exit events the tool reports that it missed, worst storm; "
        "silently: not covered by a reported loss.",
        path,
        unit="% of events missed",
        limit=100,
    )


def latency(result: dict[str, Any], path: Path, labels: Sequence[tuple[str, str]]) -> None:
    lat = result["latency"]
    rows: list[Row] = []
    for key, label in labels:
        value = lat.get(key)
        if not value:
            continue
        name = label.replace("`", "").replace(" (SCHED_FIFO)", "").replace("1 process / ", "1 per ")
        colour = BLUE if "eBPF" in label else SKY
        text = f"p50 {value['p50']:.2f}, p99 {value['p99']:.2f} ms"
        rows.append((name, colour, value["p99"], None, text))
    _bars(
        rows,
        "procobsrv latency: kernel timestamp to handler call",
        "Bar: the 99th percentile (p99); p50 is the median. Idle: one process every 20 ms; "
        "storm: 4 spawners.",
        path,
        unit="milliseconds",
        limit=max(v[2] or 0.0 for v in rows) * 1.7 if rows else None,
        reference=(1.0, "idle target: p99 < 1 ms"),
    )


def draw(
    result: dict[str, Any], directory: Path, latencies: Sequence[tuple[str, str]]
) -> list[Path]:
    """Every figure, as ``directory``/performance-<name>.png; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / f"performance-{name}.png" for name in FIGURES}
    cpu(result, paths["cpu"])
    tax(result, paths["tax"])
    command_line(result, paths["command-line"])
    missed(result, paths["missed"])
    latency(result, paths["latency"], latencies)
    return list(paths.values())
