"""Where upload bytes live: a small core interface plus optional capabilities."""

from .base import LocalFiles, RangeCopier, Store, Truncater, WriteProgress
from .local import LocalStore

__all__ = ["Store", "Truncater", "LocalFiles", "RangeCopier", "WriteProgress", "LocalStore"]
