"""OMR: sheet templates, printable sheets, a scan simulator and the sheet reader."""

from .template import Template, TemplateError

__all__ = ["Template", "TemplateError"]
