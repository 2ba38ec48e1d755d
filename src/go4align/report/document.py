"""A report as a list of blocks, rendered to Markdown and to one self-contained HTML file.

Building the content once and rendering it twice keeps report.md and report.html identical in
substance. Text is plain (no inline markup), so both renderings escape it the same simple way.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

__all__ = ["Block", "Heading", "Image", "Link", "Paragraph", "Table", "to_html", "to_markdown"]


@dataclass(frozen=True)
class Link:
    text: str
    href: str


Cell = str | Link


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True)
class Image:
    path: str  # relative to the document, for Markdown
    alt: str
    png: bytes  # embedded in the HTML


Block = Heading | Paragraph | Table | Image


def _md_cell(cell: Cell) -> str:
    text = f"[{cell.text}]({cell.href})" if isinstance(cell, Link) else cell
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md_cell(c) for c in block.header) + " |", "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        else:
            parts.append(f"![{block.alt}]({block.path})")
    return "\n\n".join(parts) + "\n"


def _html_cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f'<a href="{html.escape(cell.href)}">{html.escape(cell.text)}</a>'
    return html.escape(cell)


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
"""


def to_html(title: str, blocks: list[Block]) -> str:
    """One HTML file with its figures embedded as base64 PNG: it can be mailed or archived alone."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_html_cell(c)}</th>" for c in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>\n" for row in block.rows)
            body.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>")
        else:
            data = base64.b64encode(block.png).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}"></figure>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
