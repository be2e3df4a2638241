"""Self-contained HTML building blocks: the page shell, tables, cards and value formatting.

Every page written by aifactory opens offline, from a USB stick or an air-gapped operations
network: styles are inlined, charts are inline SVG, there are no scripts and no reference to
anything outside the file. All text from a run (tenant names, trace paths, reasons) goes
through :func:`html.escape`.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence

from aifactory import __version__

Cell = str | int | float | None

_CSS = """
:root { --fg:#1f2328; --muted:#656d76; --line:#d8dee4; --bg:#ffffff; --soft:#f6f8fa;
  --accent:#4C72B0; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Noto Sans KR",
  "Apple SD Gothic Neo", "Malgun Gothic", sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; }
p.sub, p.note, footer { color: var(--muted); }
p.sub { margin: 0 0 16px; }
p.note { font-size: 12.5px; margin: 4px 0 10px; }
.params { display:flex; flex-wrap:wrap; gap:6px 8px; margin: 8px 0 16px; padding:0;
  list-style:none; }
.params li { background: var(--soft); border:1px solid var(--line); border-radius: 12px;
  padding: 2px 10px; font-size: 12.5px; }
.params b { font-weight: 600; }
.cards { display:grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 10px; }
.card { border:1px solid var(--line); border-radius: 8px; padding: 10px 12px;
  background: var(--soft); }
.card .k { font-size: 12px; color: var(--muted); }
.card .v { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.grid2 { display:grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 18px; }
figure { margin: 0; }
figure svg { width: 100%; height: auto; display:block; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; }
th { background: var(--soft); font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.raw { color: var(--muted); font-size: 12px; }
tbody tr:hover { background: #f0f4fa; }
.scroll { overflow-x: auto; }
footer { margin-top: 40px; font-size: 12px; }
@media print { main { max-width: none; } h2 { break-after: avoid; }
  figure { break-inside: avoid; } }
"""

DASH = "\u2013"


def esc(value: object) -> str:
    """Escape any value for HTML text or attribute context."""
    return html.escape(str(value), quote=True)


def is_number(value: object) -> bool:
    """True for a finite int or float (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def fmt_duration(seconds: object) -> str:
    """Seconds in the unit a person reads fastest (s, min, h, d); a dash when unknown."""
    if not is_number(seconds):
        return DASH
    s = float(seconds)  # type: ignore[arg-type]  # is_number checked it is int | float
    a = abs(s)
    if a < 60.0:
        return f"{s:.1f} s" if a < 10.0 else f"{s:.0f} s"
    if a < 3600.0:
        return f"{s / 60.0:.1f} min"
    if a < 2 * 86400.0:
        return f"{s / 3600.0:.1f} h"
    return f"{s / 86400.0:.1f} d"


def fmt_int(value: object) -> str:
    """An integer with thousands separators; a dash when unknown."""
    if not is_number(value):
        return DASH
    return f"{round(float(value)):,}"  # type: ignore[arg-type]  # is_number checked the type


def fmt_float(value: object, digits: int = 3) -> str:
    """A number to ``digits`` significant figures, thousands separated when large."""
    if not is_number(value):
        return DASH
    v = float(value)  # type: ignore[arg-type]  # is_number checked the type
    if abs(v) >= 10**digits:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_pct(fraction: object, digits: int = 1) -> str:
    """A fraction (0.85) as a percentage (85.0 %)."""
    if not is_number(fraction):
        return DASH
    return f"{100.0 * float(fraction):.{digits}f} %"  # type: ignore[arg-type]  # checked


def fmt_any(value: object) -> str:
    """A plain rendering of any JSON value for key/value tables."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return fmt_int(value)
    if isinstance(value, float):
        return fmt_float(value, 4)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    numeric: Sequence[bool] | None = None,
    raw_last: bool = False,
) -> str:
    """An HTML table; cells are escaped, ``numeric`` columns are right-aligned.

    With ``raw_last`` the last column is styled as the muted machine-readable value.
    """
    num = list(numeric) if numeric is not None else [False] * len(headers)
    head = "".join(
        f'<th class="n">{esc(h)}</th>' if n else f"<th>{esc(h)}</th>"
        for h, n in zip(headers, num, strict=True)
    )
    body: list[str] = []
    last = len(headers) - 1
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = DASH if cell is None else esc(cell)
            cls = "raw n" if raw_last and i == last else ("n" if num[i] else "")
            cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="scroll"><table><thead><tr>'
        + head
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )


def cards(items: Iterable[tuple[str, str]]) -> str:
    """Headline figures as a row of cards: ``(label, formatted value)``."""
    inner = "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>'
        for k, v in items
    )
    return f'<div class="cards">{inner}</div>'


def params_list(items: Iterable[tuple[str, object]]) -> str:
    """Run parameters as a row of pills; ``None`` values are left out."""
    inner = "".join(
        f"<li><b>{esc(k)}</b> {esc(fmt_any(v))}</li>" for k, v in items if v is not None
    )
    return f'<ul class="params">{inner}</ul>'


def figure(svg: str, caption: str | None = None) -> str:
    """Wrap an inline SVG chart (already cleaned by ``charts.render_svg``)."""
    cap = f'<p class="note">{esc(caption)}</p>' if caption else ""
    return f"<figure>{svg}{cap}</figure>"


def section(title: str, *parts: str, note: str | None = None) -> str:
    """A titled section of the page."""
    lead = f'<p class="note">{esc(note)}</p>' if note else ""
    return f"<section><h2>{esc(title)}</h2>{lead}{''.join(parts)}</section>"


def page(title: str, subtitle: str, body: str) -> str:
    """The whole document: inline CSS, no scripts, no external references."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f'<h1>{esc(title)}</h1>\n<p class="sub">{esc(subtitle)}</p>\n{body}\n'
        f"<footer>Written by aifactory {esc(__version__)}. This page is self-contained: it "
        "loads nothing from the network.</footer>\n</main>\n</body>\n</html>\n"
    )
