"""HTML building blocks of the report: one self-contained page, inline CSS and JavaScript.

Nothing here refers to anything outside the page: figures are ``data:`` PNGs,
depictions are inline SVG, and a Content-Security-Policy forbids the browser any
other source, so the file opens from disk, offline, and can be mailed around.

Text from the run's inputs (ids, SMILES, labels, residue names, config values, a
model's ``card.json``) is HTML-escaped by the callers (:func:`text`); in case something
slips through, the policy lets only the one script of this module run: ``script-src``
names it by its SHA-256 (:func:`script_hash`), so an injected ``<script>`` or
``onerror=`` handler is refused by the browser. Styles may stay inline. A page with 3D
views (:mod:`pipeline.report.viewer`) carries two more scripts, the vendored 3Dmol.js and
the viewer's, each named by its own hash.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
header { background: #1f3b57; color: #fff; padding: 14px 28px; }
header h1 { margin: 0; font-size: 22px; } header p { margin: 4px 0 0; opacity: 0.85; font-size: 13px; }
nav { padding: 6px 28px; background: #e8edf2; font-size: 13px; } nav a { margin-right: 14px; color: #1f3b57; }
main { padding: 8px 28px 40px; max-width: 1500px; }
section { background: #fff; border: 1px solid #dde3ea; border-radius: 6px; padding: 10px 18px 16px; margin: 14px 0; }
h2 { font-size: 18px; color: #1f3b57; border-bottom: 1px solid #dde3ea; padding-bottom: 4px; }
p.note { font-size: 13px; color: #555; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border-bottom: 1px solid #e3e7ec; padding: 4px 8px; text-align: left; vertical-align: middle; }
th { background: #f0f3f6; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.hits th { max-width: 120px; }
div.scroll { overflow-x: auto; }
table.sortable th.sorted-asc::after { content: " \\25B2"; font-size: 10px; }
table.sortable th.sorted-desc::after { content: " \\25BC"; font-size: 10px; }
table.sortable th.nosort { cursor: default; }
table.hits td.structure { padding: 0; width: 190px; }
table.hits td.interactions { min-width: 240px; max-width: 420px; }
table.hits tr:hover { background: #f5f9ff; }
span.chip { display: inline-block; background: #eef3f8; border-radius: 3px; padding: 0 4px; margin: 1px; font-size: 11px; }
span.chip.md { background: #fdf1e4; }
span.active { color: #c0392b; font-weight: 600; } span.inactive { color: #7f8c8d; }
span.spread { color: #777; font-size: 11px; }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; font-size: 13px; }
dl.settings dt { font-weight: 600; color: #1f3b57; } dl.settings dd { margin: 0; }
figure { margin: 10px 0 18px; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #444; max-width: 1000px; }
pre { background: #f4f6f8; padding: 8px; font-size: 12px; overflow-x: auto; }
details summary { cursor: pointer; color: #1f3b57; font-size: 13px; }
"""

# Sorts a table.sortable by the clicked column: numbers by data-value (empty sorts last
# in both directions), text by its content. Nothing else runs on the page.
JS = """
(function () {
  function key(cell, numeric) {
    if (!cell) { return numeric ? NaN : ""; }
    var raw = cell.getAttribute("data-value");
    if (numeric) { return raw === null || raw === "" ? NaN : parseFloat(raw); }
    return (raw !== null ? raw : cell.textContent).trim().toLowerCase();
  }
  function sortBy(table, index, th) {
    var numeric = th.getAttribute("data-type") === "num";
    var ascending = !th.classList.contains("sorted-asc");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], numeric), y = key(b.cells[index], numeric);
      if (numeric) {
        if (isNaN(x) && isNaN(y)) { return 0; }
        if (isNaN(x)) { return 1; }
        if (isNaN(y)) { return -1; }
        return ascending ? x - y : y - x;
      }
      return ascending ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) {
      c.classList.remove("sorted-asc", "sorted-desc");
    });
    th.classList.add(ascending ? "sorted-asc" : "sorted-desc");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      if (th.classList.contains("nosort")) { return; }
      th.addEventListener("click", function () { sortBy(table, index, th); });
    });
  });
})();
"""


def script_hash(script: str) -> str:
    """The CSP source of one inline script: ``'sha256-…'`` of its exact text (UTF-8, base64)."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def content_security_policy(*scripts: str) -> str:
    """The page's policy: nothing from outside, images as ``data:`` only, no script but ``scripts``.

    No ``'unsafe-inline'`` for scripts (which would also allow ``onclick=`` attributes), so
    the page's JavaScript binds its handlers with ``addEventListener``; each inline script
    is named by its own hash.
    """
    sources = " ".join(script_hash(s) for s in scripts)
    return (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src {sources}; "
        "base-uri 'none'; form-action 'none'"
    )


#: The policy of every report page (computed from :data:`JS`, so it follows any edit of it).
CSP = content_security_policy(JS)


@dataclass
class Cell:
    """One table cell: ``html`` is shown; ``value`` (if given) is what the column sorts by."""

    html: str
    value: float | str | None = None
    numeric: bool = False
    css: str = ""
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Column:
    """A table column: header text, whether it sorts as numbers, an optional tooltip."""

    title: str
    numeric: bool = False
    sortable: bool = True
    tooltip: str = ""


def text(value: object) -> str:
    """HTML-escaped text."""
    return escape(str(value))


def is_missing(value: object) -> bool:
    """True for ``None`` and NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: object, digits: int = 2) -> str:
    """A number with ``digits`` decimals; an en dash when missing."""
    return "–" if is_missing(value) else f"{float(value):.{digits}f}"


def num_cell(value: object, digits: int = 2, extra: str = "") -> Cell:
    """A numeric cell showing ``value`` (and ``extra`` HTML after it), sorting by the full value."""
    shown = number(value, digits) + (f" {extra}" if extra and not is_missing(value) else "")
    return Cell(shown, None if is_missing(value) else float(value), numeric=True)


def _header(column: Column) -> str:
    classes = " ".join(filter(None, ["num" if column.numeric else "", "" if column.sortable else "nosort"]))
    attrs = [f'class="{classes}"'] if classes else []
    if column.numeric:
        attrs.append('data-type="num"')
    if column.tooltip:
        attrs.append(f'title="{text(column.tooltip)}"')
    return f"<th {' '.join(attrs)}>{text(column.title)}</th>" if attrs else f"<th>{text(column.title)}</th>"


def table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], css: str = "", table_id: str = "") -> str:
    """An HTML table; ``css`` classes ``sortable`` make the headers sort the rows."""
    head = "".join(_header(c) for c in columns)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            classes = " ".join(filter(None, ["num" if cell.numeric else "", cell.css]))
            attrs = ([f'class="{classes}"'] if classes else []) + (
                [] if cell.value is None else [f'data-value="{text(cell.value)}"']
            )
            attrs += [f'{name}="{text(value)}"' for name, value in cell.attrs.items()]
            cells.append(f"<td {' '.join(attrs)}>{cell.html}</td>" if attrs else f"<td>{cell.html}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    attrs = "".join([f' id="{text(table_id)}"' if table_id else "", f' class="{text(css)}"' if css else ""])
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(png: bytes, caption: str, name: str) -> str:
    """A ``<figure>`` with the PNG embedded as a data URI and an HTML caption."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="fig-{text(name)}"><img alt="{text(name)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def section(anchor: str, title: str, body: str) -> str:
    """A titled ``<section>`` that the navigation bar links to."""
    return f'<section id="{text(anchor)}"><h2>{text(title)}</h2>{body}</section>'


def definition_list(items: Sequence[tuple[str, str]]) -> str:
    """A two-column list of settings (``items``: title, HTML)."""
    return '<dl class="settings">' + "".join(f"<dt>{text(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def page(
    title: str,
    subtitle: str,
    sections: Sequence[tuple[str, str, str]],
    scripts: Sequence[str] = (),
    css: str = "",
) -> str:
    """The whole HTML document.

    Parameters
    ----------
    title, subtitle
        Shown in the header (plain text).
    sections
        ``(anchor, title, body HTML)`` in page order; the navigation bar links to each.
    scripts
        Further inline scripts (trusted code, not run data), run in this order after the
        page's own :data:`JS`; the policy names each by its hash.
    css
        Further styles, after :data:`CSS`.
    """
    nav = "".join(f'<a href="#{text(anchor)}">{text(name)}</a>' for anchor, name, _ in sections)
    body = "".join(section(anchor, name, html) for anchor, name, html in sections)
    policy = content_security_policy(JS, *scripts) if scripts else CSP
    tail = "".join(f"<script>{script}</script>" for script in (JS, *scripts))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{text(title)}</title><style>{CSS}{css}</style></head><body>"
        f"<header><h1>{text(title)}</h1><p>{text(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{body}</main>{tail}</body></html>\n"
    )
