"""OMR: sheet templates, printable sheets, a scan simulator and the sheet reader."""

from .reader import SheetResult, parse_qr, read_sheet
from .render import render_sheet, write_pages
from .template import Template, TemplateError

__all__ = [
    "SheetResult",
    "Template",
    "TemplateError",
    "parse_qr",
    "read_sheet",
    "render_sheet",
    "write_pages",
]
