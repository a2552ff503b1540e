"""The argparse pieces the client's command modules share."""

from __future__ import annotations

import argparse
from typing import Any, Protocol


class Subcommands(Protocol):
    """What argparse's add_subparsers() returns, as far as the client commands use it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def server_option() -> argparse.ArgumentParser:
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--server", help="the server's URL (default: the one you logged in to)")
    return server
