"""Typed application state (aiohttp's web.AppKey) and the per-request principal."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ..auth import Authenticator
from ..batches.retention import Retention
from ..config import Settings
from ..db.removals import RemovalRepo
from ..db.repo import Repo
from ..metrics import Counters
from ..store import Store
from ..store.files import CompletedFiles
from ..uploads.chunked import ChunkedUploads
from ..uploads.model import Principal
from ..uploads.service import UploadService
from ..uploads.sweeper import Sweeper
from .pools import BoundedPool

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
REPO = web.AppKey("repo", Repo)
STORE = web.AppKey("store", Store)
SERVICE = web.AppKey("service", UploadService)
AUTH = web.AppKey("auth", Authenticator)
FILES = web.AppKey("files", CompletedFiles)
CHUNKED = web.AppKey("chunked", ChunkedUploads)
METRICS = web.AppKey("metrics", Counters)
REVIEW_POOL = web.AppKey("review_pool", BoundedPool)
SWEEPER = web.AppKey("sweeper", Sweeper)
REMOVALS = web.AppKey("removals", RemovalRepo)
RETENTION = web.AppKey("retention", Retention)

PRINCIPAL = web.RequestKey("principal", Principal)  # set by the auth middleware


def public(handler):
    """Marks a handler that needs no bearer token (login, health, OpenAPI)."""
    handler.public = True
    return handler


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
