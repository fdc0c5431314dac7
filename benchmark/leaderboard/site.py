"""The board's static site: ``site/index.html`` (the table, sortable by any column), one page per entry
(``site/entries/<entry_id>.html``: its figures, the self-reported ones apart, a grid of samples with mask overlays)
and the thumbnails beside them (``site/media/<entry_id>/``). No server, no network: the pages open from a file.

Every text is escaped with ``html.escape``; the one data block is JSON with ``<``, ``>`` and ``&`` written as
``\\u003c`` etc. (no ``</script>`` or ``<!--`` can close it); a Content-Security-Policy lets only the page's own
script (by its hash) and style run, so even markup that slipped through could not execute.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import shutil
from pathlib import Path
from typing import Any

from benchmark.leaderboard.board import PREVIEW, PREVIEW_KINDS, BoardPaths, preview_file
from benchmark.leaderboard.build import BoardEntry, BuiltBoard, Column, per_sample_values, preview_ids
from benchmark.leaderboard.site_assets import CSS, SCRIPT
from benchmark.tables import ARROWS

PREVIEW_LABELS = {"source": "source + GT mask", "edit": "edited", "overlay": "edited + method's mask"}


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def json_for_script(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` left, so neither
    ``</script>`` nor ``<!--`` can end or change the block; ensure_ascii escapes U+2028/U+2029 too."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page(title: str, body: str, with_script: bool) -> str:
    script_src = csp_hash(SCRIPT) if with_script else "'none'"
    policy = (
        f"default-src 'none'; img-src 'self' file: data:; style-src {csp_hash(CSS)}; script-src {script_src}; "
        "base-uri 'none'; form-action 'none'"
    )
    script = f"<script>{SCRIPT}</script>" if with_script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(policy)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n{script}\n</body>\n</html>\n"
    )


def number(value: Any) -> str:
    if value is None:
        return "–"
    if value in ("inf", "-inf"):
        return "∞" if value == "inf" else "−∞"
    value = float(value)
    if math.isnan(value):
        return "–"
    return f"{value:.4g}"


def header_label(col: Column) -> str:
    arrow = ARROWS.get(col.higher_is_better) if col.higher_is_better is not None and col.metric else None
    label = esc(col.metric if col.group == "edit_type" else col.label) + (f" {arrow}" if arrow else "")
    return label + (f'<br><span class="ci">{esc(col.edit_type)}</span>' if col.group == "edit_type" else "")


def cell_html(entry: BoardEntry, col: Column) -> str:
    value = entry.values.get(col.key)
    classes = esc(" ".join([f"g-{col.group}", f"c-{col.key.replace(':', '-')}"] + ([] if col.numeric else ["text"])))
    if col.key == "method":
        link = f'<a href="entries/{esc(entry.entry_id)}.html">{esc(value)}</a>'
        return f'<td class="method">{link}</td>'
    if col.key == "verified":
        mark = '<span class="verified">✓ re-scored</span>' if entry.verified else '<span class="unverified">✗</span>'
        title = "" if entry.verified else f' title="{esc(entry.unverified_reason)}"'
        return f'<td class="text"{title}>{mark}</td>'
    if col.numeric:
        text = number(value)
        ci = entry.ci95.get(col.key)
        if ci is not None and col.group == "verified":  # the edit-type columns show means only
            text += f' <span class="ci">± {number(ci)}</span>'
        return f'<td class="{classes}">{text}</td>'
    return f'<td class="{classes}">{esc(value if value is not None else "–")}</td>'


def index_html(built: BuiltBoard) -> str:
    board = built.board
    heads = "".join(
        f'<th scope="col" class="g-{esc(c.group)}{"" if c.numeric else " text"}">{header_label(c)}</th>'
        for c in built.columns
    )
    rows = "\n".join(
        f'<tr data-row="{i}">' + "".join(cell_html(e, c) for c in built.columns) + "</tr>"
        for i, e in enumerate(built.entries)
    )
    data = {
        "columns": [
            {"key": c.key, "numeric": c.numeric, "higher_is_better": c.higher_is_better} for c in built.columns
        ],
        "rows": [[e.values.get(c.key) for c in built.columns] for e in built.entries],
    }
    metrics = board.metrics.preset or board.metrics.file
    skipped = "".join(f"<li>{esc(line)}</li>" for line in built.skipped)
    body = f"""<header>
<h1>{esc(board.title)}</h1>
<p class="description">{esc(board.description)}</p>
<p class="meta">dataset <b>{esc(board.dataset.config)}</b> {esc(json.dumps(board.dataset.overrides))}
(checksum <code>{esc(board.dataset.checksum[:16])}…</code>) · metric preset <b>{esc(metrics)}</b>
(<code>{esc(built.metrics_hash[:16])}…</code>) · ranked by <b>{esc(board.ranking.metric)}</b>
({esc(board.ranking.direction)} is better) · missing samples: {esc(board.missing_samples)}</p>
<p class="meta">built {esc(built.built_at)} with editing-mask-bench {esc(built.harness.version)}
{esc((built.harness.git_commit or "")[:10])}</p>
<p class="legend meta"><span><span class="verified">✓ re-scored</span>: every figure recomputed here from the
submitted images with the pinned preset and dataset</span><span class="g-self_reported">shaded columns: self-reported
by the submitter, not verified</span><span>click a column header to sort</span></p>
</header>
<main>
<div class="scroll"><table class="board" id="board">
<thead><tr>{heads}</tr></thead>
<tbody>
{rows}
</tbody>
</table></div>
{f"<h2>Left out</h2><ul>{skipped}</ul>" if skipped else ""}
</main>
<script type="application/json" id="board-data">{json_for_script(data)}</script>"""
    return page(board.title, body, with_script=True)


def summary_table(entry: BoardEntry, edit_types: list[str]) -> str:
    metrics = list(dict.fromkeys(c.metric for c in entry.score.summary))
    types = ["all", *[t for t in edit_types if any(c.edit_type == t for c in entry.score.summary)]]
    heads = "".join(f'<th scope="col">{esc(t)}</th>' for t in types)
    body = []
    for metric in metrics:
        arrow = ARROWS.get(entry.score.higher_is_better.get(metric)) if metric in entry.score.higher_is_better else ""
        cells = []
        for t in types:
            cell = entry.cell(metric, t)
            if cell is None:
                cells.append("<td>–</td>")
                continue
            ci = f' <span class="ci">± {number(cell.ci95)}</span>' if cell.ci95 is not None else ""
            cells.append(f'<td>{number(cell.mean)}{ci} <span class="ci">n={cell.n}</span></td>')
        body.append(f'<tr><th scope="row" class="text">{esc(metric)} {arrow}</th>{"".join(cells)}</tr>')
    table = f"<table><thead><tr><th></th>{heads}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def self_reported_table(entry: BoardEntry) -> str:
    reported = entry.manifest.self_reported
    rows = [
        ("NFE per image", number(reported.nfe_per_image)),
        ("seconds per image", number(reported.time_s_per_image)),
        ("hardware", esc(reported.hardware or "–")),
    ]
    for metric, claimed in reported.metrics.items():
        cell = entry.cell(metric)
        verified = number(cell.mean) if cell is not None else "not computed here"
        rows.append((f"{metric} (claimed)", f"{number(claimed)} · verified here: {verified}"))
    body = "".join(f'<tr><th scope="row" class="text">{esc(k)}</th><td class="text">{v}</td></tr>' for k, v in rows)
    return f'<table class="g-self_reported"><tbody>{body}</tbody></table>'


def facts_table(entry: BoardEntry) -> str:
    m = entry.manifest
    score = entry.score
    harness = m.harness
    rows = [
        ("dataset (submitted)", f"{m.dataset.name} {m.dataset.checksum[:16]}…"),
        ("dataset (scored)", f"{score.dataset_name} {score.dataset_checksum[:16]}…"),
        ("samples", f"{score.samples_expected} expected, {len(score.samples_missing)} missing (scored as failed)"),
        ("seed", m.seed),
        ("resolution", m.resolution),
        ("made with", f"editing-mask-bench {harness.version} {harness.git_commit or ''}" if harness else "unknown"),
        (
            "scored",
            f"{score.scored_at} with editing-mask-bench {score.harness.version} {score.harness.git_commit or ''}",
        ),
        ("metric preset", score.metrics_hash[:16] + "…"),
        ("metrics skipped here", ", ".join(score.skipped_metrics) or "none"),
        ("submission digest", score.submission_digest[:16] + "…"),
    ]
    body = "".join(
        f'<tr><th scope="row" class="text">{esc(k)}</th><td class="text">{esc(v if v is not None else "–")}</td></tr>'
        for k, v in rows
    )
    return f"<table><tbody>{body}</tbody></table>"


def sample_grid(entry: BoardEntry, ranking_metric: str) -> str:
    values = per_sample_values(entry, ranking_metric)
    figures = []
    for sample_id in preview_ids(entry):
        images = []
        for kind in PREVIEW_KINDS:
            name, label = preview_file(sample_id, kind), PREVIEW_LABELS[kind]
            if (entry.folder / PREVIEW / name).exists():
                src = f"../media/{esc(entry.entry_id)}/{esc(name)}"
                images.append(f'<img src="{src}" alt="{esc(label)}" title="{esc(label)}">')
        value = values.get(sample_id)
        figures.append(
            f'<figure><div class="row">{"".join(images)}</div><figcaption>{esc(sample_id)} · '
            f"{esc(ranking_metric)} {number(value)}</figcaption></figure>"
        )
    if not figures:
        return "<p class='meta'>no sample thumbnails</p>"
    kinds = " · ".join(PREVIEW_LABELS[kind] for kind in PREVIEW_KINDS)
    return f'<p class="meta">each sample: {esc(kinds)}</p><div class="grid">{"".join(figures)}</div>'


def entry_html(built: BuiltBoard, entry: BoardEntry) -> str:
    m = entry.manifest
    links = " · ".join(
        f'<a href="{esc(url)}" rel="noopener noreferrer nofollow">{label}</a>'
        for label, url in (("paper", m.method.paper_url), ("code", m.method.code_url))
        if url
    )
    status = (
        '<p class="verified">✓ re-scored on this board</p>'
        if entry.verified
        else f'<p class="unverified">not verified: {esc(entry.unverified_reason)}</p>'
    )
    config = ""
    if m.harness is not None and m.harness.config is not None:
        config_text = json.dumps(m.harness.config, indent=1, ensure_ascii=False, allow_nan=False)
        config = f"<details><summary>the run's config (as submitted)</summary><pre>{esc(config_text)}</pre></details>"
    rank = f"rank {entry.rank}" if entry.rank is not None else "unranked"
    body = f"""<p><a href="../index.html">← {esc(built.board.title)}</a></p>
<header>
<h1>{esc(m.method.name)}</h1>
<p class="meta">{esc(rank)} · entry {esc(entry.entry_id)}</p>
{status}
<p class="description">{esc(m.method.description)}</p>
<p>{links}</p>
</header>
<main>
<h2>Verified figures (re-scored here)</h2>
{summary_table(entry, built.edit_types)}
<h2>Self-reported (not verified)</h2>
{self_reported_table(entry)}
<h2>Provenance</h2>
{facts_table(entry)}
{config}
<h2>Samples</h2>
{sample_grid(entry, built.board.ranking.metric)}
</main>"""
    return page(f"{m.method.name} · {built.board.title}", body, with_script=False)


def write_site(built: BuiltBoard, paths: BoardPaths) -> Path:
    """Write the site afresh into ``paths.site`` (built in a sibling folder, then swapped in)."""
    site = paths.site
    tmp = site.with_name(f".{site.name}.new")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "entries").mkdir(parents=True)
    (tmp / "index.html").write_text(index_html(built), encoding="utf-8")
    for entry in built.entries:
        (tmp / "entries" / f"{entry.entry_id}.html").write_text(entry_html(built, entry), encoding="utf-8")
        preview = entry.folder / PREVIEW
        if preview.is_dir():
            shutil.copytree(preview, tmp / "media" / entry.entry_id)
    old = site.with_name(f".{site.name}.old")
    if site.exists():
        site.rename(old)
    tmp.rename(site)
    if old.exists():
        shutil.rmtree(old)
    return site / "index.html"
