"""omr-tus: a resumable-upload server (tus 1.0 + a legacy chunk API) for scanned exam sheets."""

__version__ = "0.1.0"
