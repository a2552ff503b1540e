"""Where upload bytes live: a small core interface plus optional capabilities."""

from .base import Store, Truncater, LocalFiles, WriteProgress, capabilities
from .local import LocalStore

__all__ = ["Store", "Truncater", "LocalFiles", "WriteProgress", "LocalStore", "capabilities"]
