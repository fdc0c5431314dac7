"""``report.html``: one self-contained page (no script, no network, opens from a file) with a run's or a sweep's
tables, its plots embedded as PNG data URIs (each linking to its SVG beside the page) and its sample texts.

Every text from the run (method and metric names, prompts, paths, overrides) is escaped with ``html.escape``; the
page's Content-Security-Policy allows no script at all and only its own style, so markup that slipped through could
not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.plots import SavedPlot
from benchmark.report_data import SampleText

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; white-space: pre-wrap; }
.scroll { overflow-x: auto; } .note { color: #555; } .warning { color: #a00; font-weight: bold; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; border: 1px solid #ddd; padding: 0.4em; background: #fff; }
figure img { max-width: 100%; display: block; } figcaption { font-size: 0.85em; color: #444; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.facts dt { font-weight: bold; } dl.facts dd { margin: 0; font-family: monospace; }
"""


@dataclass(frozen=True)
class Table:
    heading: str
    frame: pd.DataFrame
    text_columns: tuple[str, ...] = ()  # left-aligned, wrapped (everything else is a number or a short cell)


@dataclass(frozen=True)
class PlotSection:
    heading: str
    plots: list[SavedPlot]
    note: str = ""


@dataclass(frozen=True)
class SampleSection:
    """One method's grid of sample edits and the texts of its samples."""

    method: str
    plot: SavedPlot
    texts: list[SampleText]


@dataclass
class ReportPage:
    title: str
    folder: Path  # where the page is written: the SVG links are relative to it
    facts: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    published: Table | None = None
    published_note: str = ""
    tables: list[Table] = field(default_factory=list)
    plot_sections: list[PlotSection] = field(default_factory=list)
    samples: list[SampleSection] = field(default_factory=list)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}" if math.isfinite(value) else ("∞" if value > 0 else "−∞")
    return esc(value)


def table_html(table: Table) -> str:
    frame = table.frame
    head = "".join(f'<th class="{"text" if c in table.text_columns else ""}">{esc(c)}</th>' for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        tds = "".join(
            f'<td class="text">{esc(v)}</td>' if c in table.text_columns else f"<td>{cell(v)}</td>"
            for c, v in zip(frame.columns, values, strict=True)
        )
        rows.append(f"<tr>{tds}</tr>")
    return (
        f'<h3>{esc(table.heading)}</h3>\n<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def figure_html(plot: SavedPlot, folder: Path) -> str:
    data = base64.b64encode(plot.png.read_bytes()).decode("ascii")
    link = f' · <a href="{esc(plot.svg.relative_to(folder).as_posix())}">SVG</a>' if plot.svg else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{esc(plot.title)}">'
        f"<figcaption>{esc(plot.title)}{link}</figcaption></figure>"
    )


def plot_section_html(section: PlotSection, folder: Path) -> str:
    note = f'<p class="note">{esc(section.note)}</p>' if section.note else ""
    figures = "\n".join(figure_html(p, folder) for p in section.plots)
    return f'<h2>{esc(section.heading)}</h2>\n{note}<div class="plots">{figures}</div>'


def samples_html(sections: list[SampleSection], folder: Path) -> str:
    parts = ["<h2>Sample edits</h2>"]
    for section in sections:
        texts = pd.DataFrame(
            [(t.sample_id, t.edit_type, t.source_prompt, t.target_prompt, t.instruction or "") for t in section.texts],
            columns=["sample", "edit type", "source prompt", "target prompt", "instruction"],
        )
        parts.append(figure_html(section.plot, folder))
        parts.append(table_html(Table(f"{section.method}: the samples' texts", texts, tuple(texts.columns))))
    return "\n".join(parts)


def facts_html(facts: list[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    return f'<dl class="facts">{items}</dl>'


def body_html(page: ReportPage) -> str:
    parts = [f"<h1>{esc(page.title)}</h1>", facts_html(page.facts)]
    parts += [f'<p class="warning">{esc(w)}</p>' for w in page.warnings]
    if page.published is not None:
        parts += ["<h2>Published vs ours</h2>", f'<p class="note">{esc(page.published_note)}</p>']
        parts.append(table_html(page.published))
    parts.append("<h2>Summary (mean ± 95% CI)</h2>")
    parts += [table_html(t) for t in page.tables[:1]]
    if len(page.tables) > 1:  # per edit type: folded, a dataset may have many
        inner = "\n".join(table_html(t) for t in page.tables[1:])
        parts.append(f"<details><summary>per edit type ({len(page.tables) - 1})</summary>\n{inner}\n</details>")
    parts += [plot_section_html(s, page.folder) for s in page.plot_sections if s.plots]
    if page.samples:
        parts.append(samples_html(page.samples, page.folder))
    return "\n".join(parts)


def render(page: ReportPage) -> str:
    """The whole page: no script (``script-src 'none'``), images from data URIs only, the one style block by hash."""
    style_hash = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    policy = (
        f"default-src 'none'; img-src data:; style-src 'sha256-{style_hash}'; script-src 'none'; base-uri 'none'; "
        "form-action 'none'"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(policy)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n<link rel="icon" href="data:,">\n'
        f"<title>{esc(page.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body_html(page)}\n</body>\n</html>\n"
    )
