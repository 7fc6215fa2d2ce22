"""Reading documents (Markdown, text, HTML, PDF) into plain text and cutting it into passages.

Every reader is bounded: a file over :data:`MAX_DOCUMENT_BYTES`, a PDF over
:data:`MAX_PDF_PAGES` pages or one that the reader cannot parse is refused with a message, never
with a traceback.
"""

from __future__ import annotations

import html.parser
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .limits import CHUNK_CHARS, CHUNK_OVERLAP, MAX_DOCUMENT_BYTES, MAX_PDF_PAGES, KnowledgeError

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".rst", ".csv", ".json", ".yaml", ".yml"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES


@dataclass(frozen=True)
class Section:
    """A piece of a document with where it comes from (a heading, a page)."""

    text: str
    location: str = ""


@dataclass(frozen=True)
class Chunk:
    text: str
    location: str
    ordinal: int


class _HTMLText(html.parser.HTMLParser):
    """Visible text of an HTML page: scripts and styles skipped, blocks separated by lines."""

    BLOCKS: ClassVar[set[str]] = {
        "p",
        "div",
        "br",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "section",
        "pre",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "template"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
            if tag[0] == "h" and tag[1:].isdigit():
                self.parts.append("#" * int(tag[1:]) + " ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "template") and self.skip:
            self.skip -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def _decode(data: bytes, name: str) -> str:
    if b"\x00" in data[:8192]:
        raise KnowledgeError(f"{name}: holds binary data; it is not a text document")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_bytes(data: bytes, name: str) -> list[Section]:
    """The text of a document whose file name is ``name`` (its suffix decides the reader)."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise KnowledgeError(
            f"{name}: {len(data)} bytes; a document may hold at most {MAX_DOCUMENT_BYTES}",
            "split it into smaller files",
        )
    suffix = Path(name).suffix.lower()
    if suffix in PDF_SUFFIXES:
        return _pdf(data, name)
    if suffix in HTML_SUFFIXES:
        parser = _HTMLText()
        parser.feed(_decode(data, name))
        parser.close()
        return _markdown_sections("".join(parser.parts))
    if suffix in TEXT_SUFFIXES:
        text = _decode(data, name)
        return _markdown_sections(text) if suffix in (".md", ".markdown") else [Section(text)]
    raise KnowledgeError(
        f"{name}: cannot read '{suffix or 'no suffix'}' documents",
        "use Markdown, text, HTML or PDF: " + ", ".join(sorted(SUPPORTED)),
    )


def read_file(path: Path, shown: str) -> list[Section]:
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise KnowledgeError(
                f"{shown}: {size} bytes; a document may hold at most {MAX_DOCUMENT_BYTES}",
                "split it into smaller files",
            )
        data = path.read_bytes()
    except OSError as exc:
        raise KnowledgeError(f"{shown}: cannot read it ({exc.strerror})") from None
    return read_bytes(data, shown)


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _markdown_sections(text: str) -> list[Section]:
    """Sections under each heading, located by the heading (what a citation names)."""
    text = text.replace("\r\n", "\n")
    sections: list[Section] = []
    last, heading = 0, ""
    for m in _HEADING.finditer(text):
        if text[last : m.start()].strip():
            sections.append(Section(text[last : m.start()], heading))
        heading, last = m.group(2).strip(), m.start()
    if text[last:].strip():
        sections.append(Section(text[last:], heading))
    return sections


def _pdf(data: bytes, name: str) -> list[Section]:
    try:
        import pypdf
        from pypdf.errors import PyPdfError
    except ImportError:  # pragma: no cover - pypdf is a dependency
        raise KnowledgeError(f"{name}: reading PDF needs the pypdf package") from None
    # pypdf logs each repair it makes on a damaged file; the refusal below is the one message.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise KnowledgeError(f"{name}: the PDF is encrypted", "export an unprotected copy")
        pages = len(reader.pages)
        if pages > MAX_PDF_PAGES:
            raise KnowledgeError(f"{name}: {pages} pages; the limit is {MAX_PDF_PAGES}")
        sections = []
        total = 0
        for number, page in enumerate(reader.pages, 1):
            text = page.extract_text() or ""
            total += len(text)
            if total > MAX_DOCUMENT_BYTES:
                raise KnowledgeError(f"{name}: the PDF's text is larger than the limit")
            if text.strip():
                sections.append(Section(text, f"page {number}"))
        return sections
    except KnowledgeError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise KnowledgeError(
            f"{name}: not a readable PDF ({type(exc).__name__}: {exc})",
            "check that the file opens in a PDF reader, or give its text instead",
        ) from None


def chunks(
    sections: list[Section], size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP
) -> Iterator[Chunk]:
    """Passages of about ``size`` characters, cut at paragraph then sentence ends, overlapping by
    ``overlap`` so a fact on a boundary lives whole in one of them."""
    ordinal = 0
    for section in sections:
        text = re.sub(r"[ \t]+", " ", section.text).strip()
        text = re.sub(r"\n{3,}", "\n\n", text)
        start = 0
        while start < len(text):
            end = min(len(text), start + size)
            if end < len(text):
                cut = max(text.rfind("\n\n", start, end), text.rfind(". ", start, end))
                if cut > start + size // 2:
                    end = cut + 1
            piece = text[start:end].strip()
            if piece:
                yield Chunk(piece, section.location, ordinal)
                ordinal += 1
            if end >= len(text):
                break
            start = max(end - overlap, start + 1)
            # Start on a word so that a passage never opens with half a word.
            space = text.find(" ", start, end)
            start = space + 1 if 0 <= space < end - 1 else start
