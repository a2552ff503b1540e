"""Where upload bytes live: a small core interface plus optional capabilities."""

from .base import Finisher, LocalFiles, PartWriter, RangeCopier, RemoteFiles, Store, Truncater, WriteProgress
from .local import LocalStore

__all__ = [
    "Store",
    "Truncater",
    "LocalFiles",
    "RangeCopier",
    "Finisher",
    "PartWriter",
    "RemoteFiles",
    "WriteProgress",
    "LocalStore",
]
