"""The board site's one stylesheet and one script, inlined into every page (the site has no other file but images).

The script only sorts: it reads the table's sort keys from the page's JSON block (``board-data``) and reorders the
rows; it never builds markup from data, so nothing a submitter wrote can become code.
"""

from __future__ import annotations

CSS = """
:root { color-scheme: light; --line: #d0d4da; --muted: #5b6470; --ok: #11703a; --warn: #9a5b00; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1400px; padding: 0 1rem; color: #1c2026; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; }
p.meta, .meta { color: var(--muted); font-size: .9rem; }
.description { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 70rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: .35rem .6rem; text-align: right; vertical-align: top; }
th { background: #f3f5f8; position: sticky; top: 0; }
table.board th { cursor: pointer; user-select: none; white-space: nowrap; }
table.board th:focus { outline: 2px solid #2b6cb0; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.text, th.text { text-align: left; }
td.method { text-align: left; min-width: 8rem; max-width: 22rem; overflow-wrap: anywhere; }
.g-self_reported, .g-self_reported th { background: #fff8ec; }
table.board td.text { white-space: nowrap; }
td.c-hardware { white-space: normal; min-width: 14rem; max-width: 24rem; overflow-wrap: anywhere; }
.ci { color: var(--muted); font-size: .85em; white-space: nowrap; }
.verified { color: var(--ok); font-weight: 600; }
.unverified { color: var(--warn); }
.legend span { margin-right: 1.5rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(34rem, 1fr)); gap: 1rem; }
figure { margin: 0; border: 1px solid var(--line); padding: .5rem; }
figure .row { display: flex; gap: .4rem; }
figure img { width: 10.5rem; height: auto; image-rendering: pixelated; border: 1px solid var(--line); }
figcaption { font-size: .85rem; color: var(--muted); overflow-wrap: anywhere; }
pre { background: #f3f5f8; padding: .6rem; overflow-x: auto; max-height: 30rem; }
"""

SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("board-data").textContent);
  function sortKey(value, numeric) {
    if (value === null || value === undefined || value === "") { return null; }
    if (!numeric) { return String(value).toLowerCase(); }
    if (value === "inf") { return Infinity; }
    if (value === "-inf") { return -Infinity; }
    return Number(value);
  }
  function compare(a, b, ascending) {
    if (a === null && b === null) { return 0; }
    if (a === null) { return 1; }
    if (b === null) { return -1; }
    if (a === b) { return 0; }
    return (a < b ? -1 : 1) * (ascending ? 1 : -1);
  }
  function sortBy(table, th, index) {
    var column = data.columns[index];
    var current = th.getAttribute("aria-sort");
    var ascending = current ? current === "descending" : column.higher_is_better === false || !column.numeric;
    table.querySelectorAll("thead th").forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var k1 = sortKey(data.rows[Number(r1.dataset.row)][index], column.numeric);
      var k2 = sortKey(data.rows[Number(r2.dataset.row)][index], column.numeric);
      return compare(k1, k2, ascending) || Number(r1.dataset.row) - Number(r2.dataset.row);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.board").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, index) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, th, index); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, th, index); }
      });
    });
  });
})();
"""
