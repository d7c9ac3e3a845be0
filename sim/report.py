"""``prefsim report DIR``: one self-contained HTML page of a result directory.

The page holds, in this order: the run's name, description and provenance (seeds, iterations,
versions, git commit and whether the tree was modified); the degenerate-run warnings of the manifest;
the summary tables (``summary.csv``: mean [95% CI] per rule and metric, "≈ 0" at the rounding floor);
the win rates of the final policies with their intervals (``headtohead.csv``, whose heat map shows means only);
the head-to-head table of ``prefsim compare`` where the directory has one (``compare.csv``, with the
runs A and B it compares from ``compare.json``); every
figure the last drawing wrote (``figures.json``; in a directory without it, every figure file there;
PNG embedded as base64, SVG inline); which theory bounds were drawn (``bounds.csv``); and the
whole manifest.  Nothing is fetched from elsewhere: no scripts, fonts or images outside the file, so
the page can be mailed or archived as it is.
"""

from __future__ import annotations

import base64
import html
import json
import struct
from pathlib import Path

import pandas as pd

from sim.bounds_file import read_bounds
from sim.compare import COMPARE_FILE, describe_compared_run, load_run, read_runs_record
from sim.diagnostics import floor_note, precision_floor
from sim.figure_plan import manifest_tau
from sim.results_io import FIGURE_SUFFIXES, read_figure_list, read_headtohead, write_files_atomic
from sim.summary import SUMMARY_FILE, format_value, summary_cell, summary_frame, summary_heading

REPORT_FILE = "report.html"
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; } thead th { background: #f3f3f3; }
.warnings li { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.4em 0.7em; margin: 0.3em 0;
               list-style: none; }
.muted { color: #666; font-size: 0.9em; } figure { margin: 1.2em 0; }
figure img, figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
.scroll { overflow-x: auto; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
"""
#: Marks the page as rendered in tests: the number of embedded images the browser decoded, and of those
#: drawn below 90% of their printed size (``data-width``), whose text would be smaller than it was drawn.
LOAD_SCRIPT = (
    "<script>window.addEventListener('load', function () {"
    " var n = 0, shrunk = 0; document.querySelectorAll('img').forEach(function (i) {"
    " if (i.naturalWidth > 0) n++;"
    " if (i.getBoundingClientRect().width < 0.9 * Number(i.dataset.width)) shrunk++; });"
    " document.body.setAttribute('data-loaded-images', String(n));"
    " document.body.setAttribute('data-shrunk-images', String(shrunk)); });</script>"
)
#: CSS pixels per inch: a figure is shown at its printed size, pixels × CSS_DPI / its dpi, so its text has
#: the size Matplotlib drew it at (a 150-dpi PNG at 0.64 of its pixels), in a page up to 1400 px wide; a
#: narrower window scales the widest figures down to fit (a 3-panel figure of 13.8 in: 94% at 1280 px).
CSS_DPI = 96


def png_css_width(data: bytes) -> float | None:
    """The printed width of PNG ``data`` in CSS pixels (its pHYs chunk's resolution; None without one)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    width = struct.unpack(">I", data[16:20])[0]
    at = data.find(b"pHYs", 8)
    if at < 0:
        return None
    per_metre, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    if unit != 1 or per_metre <= 0:  # 1: pixels per metre
        return None
    return width * CSS_DPI / (per_metre * 0.0254)


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def _summary_tables(summary: pd.DataFrame, precision: str, tau: float | None = None) -> str:
    floor = precision_floor(precision)
    parts = []
    for iteration, block in summary.groupby("iteration", sort=False):
        block = block.assign(cell=[summary_cell(r, floor) for r in block.itertuples()])
        seeds = int(block["seeds"].max())
        parts.append(f"<h3>iteration {int(iteration)} — {html.escape(summary_heading(seeds))}</h3>")
        metrics = list(dict.fromkeys(block["metric"]))
        # the last iterate π_t and the running mixture π̄_t in two tables, each narrow enough to read
        for group in (
            [m for m in metrics if not m.endswith("_mixture")],
            [m for m in metrics if m.endswith("_mixture")],
        ):
            if not group:
                continue
            wide = block.pivot(index="rule", columns="metric", values="cell")
            wide = wide.reindex(index=list(dict.fromkeys(block["rule"])), columns=group)
            parts.append(_table(wide.fillna("–").reset_index()))
    floored = summary[summary["at_floor"].astype(bool)]
    # the game's τ of each floored row (a τ sweep's column), else the run's: tv_to_optimum's floor depends on it
    taus = floored["game.tau"].astype(float).tolist() if "game.tau" in floored.columns else tau
    note = floor_note(precision, list(floored["metric"]), taus)
    parts.append(f'<p class="muted">≈ 0: at or below {html.escape(note)}.</p>')
    return "\n".join(parts)


def _comparison_table(comparison: pd.DataFrame, precision: str) -> str:
    floor = precision_floor(precision)
    frame = pd.DataFrame(
        {
            "rule": comparison["rule"],
            "metric": comparison["metric"],
            "t": comparison["iteration"],
            "A": [format_value(v, floor) for v in comparison["mean_a"]],
            "B": [format_value(v, floor) for v in comparison["mean_b"]],
            "B − A [95% CI]": [
                f"{format_value(r.difference, floor)} [{format_value(r.difference_lower, floor)}, "
                f"{format_value(r.difference_upper, floor)}]"
                for r in comparison.itertuples()
            ],
            "P(B better) [95% CI]": [
                f"{r.probability_b_better:.2f} [{r.probability_lower:.2f}, {r.probability_upper:.2f}]"
                for r in comparison.itertuples()
            ],
            "seeds": comparison["seeds"],
        }
    )
    return _table(frame)


#: The most pairs the page lists of a run's head-to-head table (a sweep of many labels has thousands).
HEADTOHEAD_ROWS = 200


def _headtohead_table(headtohead: pd.DataFrame) -> str:
    """``headtohead.csv`` as "W(A, B) [95% CI]" per unordered pair A before B (W(B, A) = 1 − W(A, B)), with the
    pair's swept ``game.*``/``run.*`` values: the intervals the heat map (means only) does not show."""
    order = {label: index for index, label in enumerate(dict.fromkeys(headtohead["rule_a"]))}
    pairs = headtohead[headtohead["rule_a"].map(order) < headtohead["rule_b"].map(order)]
    points = [c for c in pairs.columns if c.startswith(("game.", "run."))]
    frame = pd.DataFrame(
        {
            "rule A": pairs["rule_a"],
            "rule B": pairs["rule_b"],
            **{column: pairs[column] for column in points},
            "W(A, B) [95% CI]": [
                f"{r.win_rate:.4f} [{r.ci_lower:.4f}, {r.ci_upper:.4f}]" if r.seeds > 1 else f"{r.win_rate:.4f}"
                for r in pairs.itertuples()
            ],
            "seeds": pairs["seeds"],
        }
    )
    shown = _table(frame.head(HEADTOHEAD_ROWS))
    if len(frame) > HEADTOHEAD_ROWS:
        shown += f'<p class="muted">… and {len(frame) - HEADTOHEAD_ROWS} more pairs in headtohead.csv.</p>'
    return shown


def figure_files(directory: Path) -> list[Path]:
    """The figure files of ``directory`` the report shows: those its last drawing wrote (``figures.json``,
    :func:`sim.results_io.read_figure_list`), or in a directory without that list (an older prefsim, or
    ``prefsim llm``) every ``*.png``, ``*.svg`` and ``*.pdf``."""
    listed = read_figure_list(directory)
    if listed is None:
        return sorted(path for suffix in FIGURE_SUFFIXES for path in directory.glob(f"*{suffix}"))
    return [directory / name for name in listed[0] if (directory / name).is_file()]


def _figures(directory: Path, metric_order: list[str]) -> tuple[str, int]:
    """HTML of the figures of ``directory`` (:func:`figure_files`; PNG preferred, else SVG) and how many."""
    files = {(path.stem, path.suffix.lower()) for path in figure_files(directory)}
    stems = sorted(
        {stem for stem, suffix in files if suffix in (".png", ".svg")},
        key=lambda stem: (metric_order.index(stem) if stem in metric_order else len(metric_order), stem),
    )
    parts = []
    for stem in stems:
        png, svg = directory / f"{stem}.png", directory / f"{stem}.svg"
        if (stem, ".png") in files:
            raw = png.read_bytes()
            width = png_css_width(raw)
            size = "" if width is None else f' style="width: {width:.0f}px" data-width="{width:.0f}"'
            data = base64.b64encode(raw).decode("ascii")
            body = f'<img alt="{html.escape(stem)}"{size} src="data:image/png;base64,{data}">'
        else:
            text = svg.read_text(encoding="utf-8")
            body = text[text.index("<svg") :] if "<svg" in text else ""
        parts.append(
            f'<figure id="figure-{html.escape(stem)}">{body}<figcaption>{html.escape(stem)}</figcaption></figure>'
        )
    return "\n".join(parts), len(stems)


def run_seconds(manifest: dict) -> str:
    """The run's wall time as the page says it: the seconds of the process that wrote the results, and, where
    that is not the whole computation, what it covers (a merge of shards; a resumed run's loaded parts)."""
    seconds = manifest.get("seconds")
    text = f"{seconds:g} s" if isinstance(seconds, (int, float)) else "? s"
    merged = manifest.get("merged_from")
    if merged:
        return f"{text} to merge {len(merged)} shard(s) (each shard's run time is in its own manifest)"
    loaded = manifest.get("loaded_parts")
    if loaded:
        return f"{text} for the parts this run computed ({len(loaded)} loaded from an earlier run by --resume)"
    return f"{text} wall time"


def build_report(directory: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of result directory ``directory`` to ``out`` (default ``DIR/report.html``), whole or
    not at all (:func:`sim.results_io.write_files_atomic`: a full disk leaves the previous page, and names it)."""
    directory = Path(directory)
    table, manifest = load_run(directory)
    spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
    parsed = manifest.get("parsed_spec") if isinstance(manifest.get("parsed_spec"), dict) else {}
    precision = parsed.get("precision") or spec.get("precision") or "float64"
    name = spec.get("name") or directory.name
    summary_path = directory / SUMMARY_FILE
    tau = manifest_tau(manifest)
    summary = (
        pd.read_csv(summary_path) if summary_path.is_file() else summary_frame(table, precision=precision, tau=tau)
    )

    sections = [f"<h1>{html.escape(str(name))}</h1>"]
    if spec.get("description"):
        sections.append(f"<p>{html.escape(str(spec['description']))}</p>")
    versions = manifest.get("versions") or {}
    dirty = manifest.get("git_dirty")
    provenance = [
        f"{len(manifest.get('seeds', []))} seed(s)",
        f"{parsed.get('iterations', spec.get('iterations', '?'))} iterations",
        f"mode {(parsed.get('run') or {}).get('mode', 'exact')}",
        f"precision {precision}",
        f"prefsim {versions.get('prefsim')}",
        f"git {manifest.get('git_commit') or 'unknown'}"
        + (" (uncommitted changes)" if dirty else " (clean)" if dirty is False else ""),
        run_seconds(manifest),
    ]
    sections.append(f'<p class="muted">{html.escape(" · ".join(provenance))}</p>')
    if manifest.get("complete") is False:
        sections.append('<ul class="warnings"><li>The run did not finish: results are partial.</li></ul>')

    sections.append("<h2>Warnings</h2>")
    warnings = manifest.get("warnings") or []
    if warnings:
        items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
        sections.append(f'<ul class="warnings">{items}</ul>')
    else:
        sections.append('<p class="muted">None: no degenerate-run condition was detected.</p>')

    sections.append("<h2>Summary</h2>")
    sections.append(_summary_tables(summary, precision, tau))

    headtohead = read_headtohead(directory)
    if headtohead is not None and {"rule_a", "rule_b", "win_rate", "ci_lower", "ci_upper", "seeds"} <= set(
        headtohead.columns
    ):
        if headtohead["rule_a"].nunique() > 1:
            sections.append("<h3>Final policies head to head (headtohead.csv): win rate of A against B</h3>")
            sections.append(_headtohead_table(headtohead))

    comparison_path = directory / COMPARE_FILE
    if comparison_path.is_file():
        sections.append("<h2>Head to head (prefsim compare)</h2>")
        comparison = pd.read_csv(comparison_path)
        record = read_runs_record(comparison_path)
        if record is None:
            sections.append(
                f'<p class="muted">Which runs A and B are was not recorded with {COMPARE_FILE}; rerun '
                "<code>prefsim compare DIR_A DIR_B</code> to record them.</p>"
            )
        else:
            sides = "".join(
                f"<li>{side} = {html.escape(describe_compared_run(record[side.lower()]))}</li>" for side in ("A", "B")
            )
            sections.append(f"<ul>{sides}</ul>")
        sections.append(_comparison_table(comparison, precision))

    sections.append("<h2>Figures</h2>")
    metric_order = list(dict.fromkeys(summary["metric"]))
    figures, count = _figures(directory, metric_order)
    listed = read_figure_list(directory)
    if listed is not None and not listed[1]:
        sections.append(
            '<ul class="warnings"><li>The figures were not all drawn from these results (a drawing was stopped, '
            "or the results were replaced without one): some may be missing or from an earlier run; run "
            "`prefsim plot` to draw them.</li></ul>"
        )
    if count:
        sections.append(figures)
    elif any(path.suffix.lower() == ".pdf" for path in figure_files(directory)):
        sections.append(
            '<p class="muted">The figures of this run are PDF only; add "png" or "svg" to [plot] formats and '
            "run `prefsim plot` to embed them here.</p>"
        )
    else:
        sections.append('<p class="muted">No figures in this directory (run `prefsim plot`).</p>')
    bounds = read_bounds(directory)
    if bounds is not None and not bounds.empty:
        drawn = bounds.groupby(["rule", "metric"], sort=False)["label"].first().reset_index()
        sections.append("<h3>Theory bounds drawn (bounds.csv; docs/theory.md §H)</h3>")
        sections.append(_table(drawn))

    sections.append("<h2>Manifest</h2>")
    sections.append(
        f"<details><summary>manifest.json</summary><pre>{html.escape(json.dumps(manifest, indent=2))}</pre></details>"
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>prefsim report — {html.escape(str(name))}</title><style>{STYLE}</style></head>"
        f"<body>\n{chr(10).join(sections)}\n{LOAD_SCRIPT}\n</body></html>\n"
    )
    out = Path(out) if out is not None else directory / REPORT_FILE
    # whole or not at all: a full disk leaves the previous page
    write_files_atomic({out: page.encode("utf-8")}, rerun="run `prefsim report` again")
    return out
