"""GET /openapi.json: every route of the server, described for clients and for schemathesis."""

from __future__ import annotations

from aiohttp import web

from .. import __version__
from ..http.keys import public
from ..uploads.model import UPLOAD_TYPES
from .webpage import OPENAPI_PATHS as WEB_PAGE_PATHS

STATUSES = ["uploaded", "processing", "completed", "failed"]
SHEET_STATUSES = ["pending", "ok", "needs_review", "failed"]


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _listing(key: str, items: dict) -> dict:
    """A page of a listing: its items under `key`, with total, limit and offset."""
    return {
        "type": "object",
        "properties": {
            key: {"type": "array", "items": items},
            "total": {"type": "integer"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    }


def _json(ref: str, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _tus_header(name: str, description: str, required: bool = False, schema: dict | None = None) -> dict:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


TUS_RESUMABLE = _tus_header(
    "Tus-Resumable",
    "Protocol version; must be 1.0.0 (else 412).",
    True,
    {"type": "string", "enum": ["1.0.0"]},
)
UPLOAD_ID = {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}
BATCH_ID = {"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}
TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
AUTH_ERRORS = {"401": _error("Missing, invalid or expired bearer token")}
TUS_TEXT = {"description": "Plain-text error", "content": {"text/plain": {"schema": {"type": "string"}}}}

CHUNK_FORM = {
    "type": "object",
    "required": ["chunk", "chunk_index", "total_chunks"],
    "properties": {
        "chunk": {"type": "string", "format": "binary", "description": "At most 104857600 bytes"},
        "chunk_index": {"type": "integer", "minimum": 0},
        "total_chunks": {"type": "integer", "minimum": 1},
        "filename": {"type": "string", "description": "Required with chunk 0"},
        "upload_type": {"type": "string", "enum": list(UPLOAD_TYPES), "description": "Required with chunk 0"},
        "upload_id": {"type": "string", "description": "Required when chunk_index > 0"},
        "task_id": {
            "type": "string",
            "pattern": "^[0-9]{8}$",
            "description": "Required for zip_no_qr and images",
        },
        "is_final_chunk": {"type": "string", "enum": ["true", "false"]},
        "sha256": {
            "type": "string",
            "pattern": "^[0-9a-fA-F]{64}$",
            "description": "With any chunk: the whole file's sha256 (optional), checked at completion; a "
            "mismatch answers 400 on the completing chunk and makes no batch",
        },
    },
}

SCHEMAS = {
    "Error": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}},
    "Token": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"type": "string", "enum": ["bearer"]},
            "expires_in": {"type": "integer"},
        },
    },
    "Batch": {
        "type": "object",
        "properties": {
            "batch_id": {"type": "string"},
            "upload_id": {"type": "string"},
            "filename": {"type": ["string", "null"]},
            "size": {"type": "integer"},
            "sha256": {"type": ["string", "null"]},
            "upload_type": {"type": "string", "enum": list(UPLOAD_TYPES)},
            "task_id": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": STATUSES},
            "total_sheets": {"type": "integer"},
            "processed_sheets": {"type": "integer"},
            "failed_sheets": {"type": "integer"},
            "skipped": {
                "type": "array",
                "description": "ZIP entries that are not sheets, with the reason (the first 1,000)",
                "items": {
                    "type": "object",
                    "properties": {"entry": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
            "skipped_count": {"type": "integer", "description": "every skipped entry, named or not"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "completed_at": {"type": ["string", "null"], "format": "date-time"},
            "file_deleted_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "when retention deleted the file (the results stay)",
            },
        },
    },
    "BatchList": _listing("batches", {"$ref": "#/components/schemas/Batch"}),
    "DeletionList": _listing(
        "deletions",
        {
            "type": "object",
            "properties": {
                "what": {"type": "string", "enum": ["batch", "file"]},
                "batch_id": {"type": ["string", "null"]},
                "upload_id": {"type": "string"},
                "filename": {"type": ["string", "null"]},
                "size": {"type": "integer"},
                "owner": {"type": ["string", "null"]},
                "deleted_by": {"type": ["string", "null"], "description": "null: retention"},
                "reason": {"type": "string", "enum": ["request", "retention"]},
                "deleted_at": {"type": "string", "format": "date-time"},
            },
        },
    ),
    "Progress": {
        "type": "object",
        "properties": {
            "batch_id": {"type": "string"},
            "status": {"type": "string", "enum": STATUSES},
            "total_sheets": {"type": "integer"},
            "processed_sheets": {"type": "integer"},
            "failed_sheets": {"type": "integer"},
            "progress_percentage": {"type": "number"},
        },
    },
    "ChunkReceipt": {
        "type": "object",
        "required": ["upload_id", "chunk_index", "chunks_received", "total_chunks", "is_complete", "message"],
        "properties": {
            "upload_id": {"type": "string"},
            "chunk_index": {"type": "integer"},
            "chunks_received": {"type": "integer"},
            "total_chunks": {"type": "integer"},
            "is_complete": {"type": "boolean"},
            "batch_id": {"type": "string"},
            "status": {"type": "string", "enum": ["uploaded"]},
            "message": {"type": "string"},
        },
    },
    "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
    "TaskIn": {
        "type": "object",
        "required": ["task_id", "template"],
        "properties": {
            "task_id": {"type": "string", "pattern": "^[0-9]{8}$"},
            "name": {"type": "string"},
            "template": {"type": "object", "description": "OMRChecker template.json plus markers and qr"},
            "answer_key": {"type": "object", "description": "OMRChecker evaluation.json"},
            "config": {"type": "object", "description": "OMRChecker config.json (processing dimensions)"},
        },
    },
    "TaskFiles": {
        "type": "object",
        "required": ["task_id", "template"],
        "properties": {
            "task_id": {"type": "string", "pattern": "^[0-9]{8}$"},
            "name": {"type": "string"},
            "template": {"type": "string", "format": "binary", "description": "template.json"},
            "config": {"type": "string", "format": "binary", "description": "config.json"},
            "evaluation": {"type": "string", "format": "binary", "description": "evaluation.json"},
            "asset": {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "description": "each file the template or evaluation names (marker, reference image, answer CSV, "
                "answer key image), "
                "with that name as its file name",
            },
        },
    },
    "Task": {
        "type": "object",
        "properties": {
            "task_id": {"type": "string"},
            "name": {"type": "string"},
            "template": {"type": "object"},
            "answer_key": {
                "type": ["object", "null"],
                "description": "as stored: a key sent as "
                "answer_key_image_path is stored read, as questions and answers in order",
            },
            "config": {"type": ["object", "null"]},
            "assets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
                },
            },
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "rescoring": {
                "type": "object",
                "description": "after a change of the answer key, how many of the task's ok and "
                "needs_review sheets are scored under the current key (key_version); active until all are",
                "properties": {
                    "active": {"type": "boolean"},
                    "key_version": {"type": "integer"},
                    "sheets_done": {"type": "integer"},
                    "sheets_total": {"type": "integer"},
                },
            },
        },
    },
    "Statistics": {
        "type": "object",
        "description": "Item analysis over the task's ok and needs_review sheets, corrections applied",
        "properties": {
            "task_id": {"type": "string"},
            "sheets": {"type": "integer"},
            "kr20": {
                "type": ["number", "null"],
                "description": "Kuder-Richardson 20 over number-right totals (population variance); "
                "null with fewer than 2 questions, no sheets or no variance",
            },
            "questions": {
                "type": "array",
                "description": "in the answer key's order",
                "items": {
                    "type": "object",
                    "properties": {
                        "question": {"type": "string"},
                        "difficulty": {
                            "type": ["number", "null"],
                            "description": "share of sheets right (earning the question's full marks)",
                        },
                        "discrimination": {
                            "type": ["number", "null"],
                            "description": "point-biserial correlation of right/wrong with the number "
                            "right on the other questions; null without variance",
                        },
                        "choices": {
                            "type": "object",
                            "additionalProperties": {"type": "integer"},
                            "description": 'value -> sheets that marked it; "" counts blanks',
                        },
                    },
                },
            },
        },
    },
    "Sheet": {
        "type": "object",
        "properties": {
            "sheet_id": {"type": "integer"},
            "batch_id": {"type": "string"},
            "source": {"type": "string"},
            "page": {"type": "integer"},
            "task_id": {"type": ["string", "null"]},
            "student_id": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": SHEET_STATUSES},
            "score": {"type": ["number", "null"], "description": "null while rescoring"},
            "rescoring": {
                "type": "boolean",
                "description": "the task's answer key changed and this sheet is not scored again yet",
            },
            "answers": {"type": "object"},
            "flags": {"type": "object"},
            "confidence": {"type": "object"},
            "error": {"type": ["string", "null"]},
            "corrections": {"type": "object", "description": "column -> {value, original, by, at}"},
        },
    },
    "Results": {
        "type": "object",
        "properties": {
            "batch_id": {"type": "string"},
            "sheets": {"type": "array", "items": {"$ref": "#/components/schemas/Sheet"}},
        },
    },
    "Me": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "username": {"type": "string"},
            "is_admin": {"type": "boolean"},
            "quota_bytes": {"type": ["integer", "null"], "description": "null: no limit"},
            "usage_bytes": {
                "type": "integer",
                "description": "bytes stored: uploads in progress and completed ones still kept",
            },
        },
    },
    "User": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "username": {"type": "string"},
            "role": {"type": "string", "enum": ["user", "admin"]},
            "is_admin": {"type": "boolean"},
            "disabled": {"type": "boolean"},
            "disabled_at": {"type": ["string", "null"], "format": "date-time"},
            "quota_bytes": {"type": ["integer", "null"], "description": "null: no limit"},
            "usage_bytes": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "UserIn": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "minLength": 1, "maxLength": 64},
            "password": {"type": "string", "minLength": 8},
            "role": {"type": "string", "enum": ["user", "admin"], "default": "user"},
            "quota_bytes": {"type": ["integer", "null"], "minimum": 0},
        },
    },
    "UserChange": {
        "type": "object",
        "minProperties": 1,
        "properties": {
            "role": {"type": "string", "enum": ["user", "admin"]},
            "disabled": {"type": "boolean", "description": "true also revokes the user's tokens"},
            "quota_bytes": {"type": ["integer", "null"], "minimum": 0},
            "password": {"type": "string", "minLength": 8, "description": "revokes the user's tokens"},
        },
    },
    "UserList": {
        "type": "object",
        "properties": {"users": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}},
    },
    "TaskList": _listing(
        "tasks",
        {
            "type": "object",
            "properties": {
                "task_id": {"type": "string"},
                "name": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
            },
        },
    ),
    "StoreFigures": {
        "type": "object",
        "description": "A directory (kind: directory) measured with statvfs and a walk of at most "
        "100000 files (truncated: true past that), or a bucket (kind: bucket), not measured",
        "properties": {
            "kind": {"type": "string", "enum": ["directory", "bucket"]},
            "path": {"type": "string"},
            "bucket": {"type": "string"},
            "prefix": {"type": "string"},
            "used_bytes": {"type": "integer", "description": "the files' total size"},
            "free_bytes": {"type": "integer"},
            "total_bytes": {"type": "integer", "description": "the file system's size"},
            "files": {"type": "integer"},
            "truncated": {"type": "boolean"},
        },
    },
    "Storage": {
        "type": "object",
        "properties": {
            "incoming": {"$ref": "#/components/schemas/StoreFigures"},
            "durable": {"$ref": "#/components/schemas/StoreFigures"},
            "users": {
                "type": "array",
                "description": "by usage, largest first",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "username": {"type": "string"},
                        "usage_bytes": {"type": "integer"},
                        "quota_bytes": {"type": ["integer", "null"], "description": "null: no limit"},
                    },
                },
            },
        },
    },
    "Registered": {
        "type": "object",
        "properties": {"task_id": {"type": "string"}, "registered": {"type": "boolean"}},
    },
}
USER_ID = {"name": "user_id", "in": "path", "required": True, "schema": {"type": "integer"}}
ADMIN_PATHS = {
    "/api/users": {
        "get": {
            "summary": "Every user with role, state, quota and usage (admin)",
            "responses": {
                "200": _json("#/components/schemas/UserList"),
                "403": _error("Not an admin"),
                **AUTH_ERRORS,
            },
        },
        "post": {
            "summary": "Create a user (admin)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UserIn"}}},
            },
            "responses": {
                "201": _json("#/components/schemas/User", "Created"),
                "400": _error("Invalid field, named in the detail"),
                "403": _error("Not an admin"),
                "409": _error("The username is taken"),
                **AUTH_ERRORS,
            },
        },
    },
    "/api/users/{user_id}": {
        "patch": {
            "summary": "Change a user's role, disabled state, quota or password (admin)",
            "parameters": [USER_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UserChange"}}},
            },
            "responses": {
                "200": _json("#/components/schemas/User"),
                "400": _error("Invalid field, named in the detail"),
                "403": _error("Not an admin"),
                "404": _error("No such user"),
                "409": _error("The change would leave no enabled admin"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/storage": {
        "get": {
            "summary": "What the incoming and durable stores hold and have free, and each user's usage "
            "and quota (admin)",
            "responses": {
                "200": _json("#/components/schemas/Storage"),
                "403": _error("Not an admin"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/tasks/{task_id}/preview.png": {
        "get": {
            "summary": "The task's template drawn over a blank sheet: blocks, bubbles, markers, QR box (admin)",
            "parameters": [TASK_ID],
            "responses": {
                "200": {"description": "PNG", "content": {"image/png": {}}},
                "403": _error("Not an admin"),
                "404": _error("No such task"),
                "409": _error("The stored template no longer loads"),
                "413": _error("The page is too large to preview"),
                "503": _error("Busy drawing other pictures; retry"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/tasks/{task_id}/registered": {
        "get": {
            "summary": "Whether a task is registered (anyone signed in; the upload page asks before sending)",
            "parameters": [TASK_ID],
            "responses": {
                "200": _json("#/components/schemas/Registered"),
                "400": _error("Not an 8-digit task id"),
                **AUTH_ERRORS,
            },
        }
    },
}
SHEET_ID = {"name": "sheet_id", "in": "path", "required": True, "schema": {"type": "integer"}}

PATHS = {
    "/api/auth/login": {
        "post": {
            "summary": "Log in with username and password; returns a bearer token",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["username", "password"],
                            "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": {
                "200": _json("#/components/schemas/Token"),
                "400": _error("Missing form fields"),
                "401": _error("Incorrect username or password"),
                "429": _error("Too many failed logins for this username; Retry-After says when to retry"),
            },
        }
    },
    "/api/batches": {
        "get": {
            "summary": "Your batches (all batches for an admin), newest first",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": STATUSES}},
                {
                    "name": "upload_type",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(UPLOAD_TYPES)},
                },
                {"name": "task_id", "in": "query", "schema": {"type": "string"}},
                {"name": "upload_id", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            ],
            "responses": {
                "200": _json("#/components/schemas/BatchList"),
                "400": _error("Bad filter"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/batches/{batch_id}": {
        "get": {
            "summary": "One batch",
            "parameters": [BATCH_ID],
            "responses": {
                "200": _json("#/components/schemas/Batch"),
                "404": _error("No such batch of yours"),
                **AUTH_ERRORS,
            },
        },
        "delete": {
            "summary": "Delete the batch, its sheets, answers and corrections, its upload and every stored copy of its file (owner or admin); an audit row remains",
            "parameters": [BATCH_ID],
            "responses": {
                "204": {"description": "Deleted"},
                "404": _error("No such batch of yours"),
                "423": _error("The upload is busy (being moved to durable storage); retry shortly"),
                **AUTH_ERRORS,
            },
        },
    },
    "/api/deletions": {
        "get": {
            "summary": "The audit of deletions, newest first: who deleted which batch or file, when, and its size (admin)",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            ],
            "responses": {
                "200": _json("#/components/schemas/DeletionList"),
                "400": _error("Bad limit or offset"),
                "403": _error("Not an admin"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/me": {
        "get": {
            "summary": "Who the token belongs to",
            "responses": {"200": _json("#/components/schemas/Me"), **AUTH_ERRORS},
        }
    },
    "/api/batches/{batch_id}/reprocess": {
        "post": {
            "summary": "Read every sheet of a completed batch again; corrections are kept (admin)",
            "parameters": [BATCH_ID],
            "responses": {
                "202": _json("#/components/schemas/Batch", "Queued"),
                "403": _error("Not an admin"),
                "404": _error("No such batch"),
                "409": _error("The batch has not completed, or retention deleted its file"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/sheets/{sheet_id}": {
        "get": {
            "summary": "One sheet with its answers, flags, confidences and corrections",
            "parameters": [SHEET_ID],
            "responses": {
                "200": _json("#/components/schemas/Sheet"),
                "404": _error("No such sheet of yours"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/sheets/{sheet_id}/review.png": {
        "get": {
            "summary": "The aligned page with every bubble drawn: marked, doubtful, blank; corrected fields framed",
            "parameters": [SHEET_ID],
            "responses": {
                "200": {
                    "description": "PNG",
                    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                },
                "404": _error("No such sheet of yours, or it cannot be read or aligned"),
                "503": _error("Review pictures are being drawn for others: retry after Retry-After seconds"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/sheets/{sheet_id}/answers/{column}": {
        "put": {
            "summary": "Correct one answer (admin); recorded with who and when, kept if the batch is read again",
            "parameters": [
                SHEET_ID,
                {"name": "column", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["value"],
                            "properties": {"value": {"type": "string", "maxLength": 64}},
                        }
                    }
                },
            },
            "responses": {
                "200": _json("#/components/schemas/Sheet"),
                "400": _error("No value"),
                "403": _error("Not an admin"),
                "404": _error("No such sheet or column"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/batches/{batch_id}/progress": {
        "get": {
            "summary": "Processing progress of a batch",
            "parameters": [BATCH_ID],
            "responses": {
                "200": _json("#/components/schemas/Progress"),
                "404": _error("No such batch of yours"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/batches/{batch_id}/results": {
        "get": {
            "summary": "Every sheet of a batch with its answers, flags and confidences",
            "parameters": [
                BATCH_ID,
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": SHEET_STATUSES}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 10000},
                },
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            ],
            "responses": {
                "200": _json("#/components/schemas/Results"),
                "400": _error("Bad filter"),
                "404": _error("No such batch of yours"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/batches/{batch_id}/results.csv": {
        "get": {
            "summary": "The results as CSV: source, page, task_id, student_id, status, score, then the columns",
            "parameters": [
                BATCH_ID,
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": SHEET_STATUSES}},
            ],
            "responses": {
                "200": {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}},
                "400": _error("Bad filter"),
                "404": _error("No such batch of yours"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/tasks": {
        "get": {
            "summary": "Registered tasks, newest first, without templates (admin)",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            ],
            "responses": {
                "200": _json("#/components/schemas/TaskList"),
                "400": _error("Bad limit or offset"),
                "403": _error("Not an admin"),
                **AUTH_ERRORS,
            },
        },
        "post": {
            "summary": "Register a task's sheet template and answer key (admin)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/TaskIn"}},
                    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/TaskFiles"}},
                },
            },
            "responses": {
                "201": _json("#/components/schemas/Task", "Created"),
                "400": _error("Invalid field; for a template, the detail names the bad key"),
                "403": _error("Not an admin"),
                "409": _error("The task exists"),
                **AUTH_ERRORS,
            },
        },
    },
    "/api/tasks/{task_id}": {
        "get": {
            "summary": "A task, with its answer key (admin; to other users no task exists: 404)",
            "parameters": [TASK_ID],
            "responses": {
                "200": _json("#/components/schemas/Task"),
                "404": _error("No such task"),
                **AUTH_ERRORS,
            },
        },
        "put": {
            "summary": "Replace a task (admin); asset files not sent again are kept",
            "parameters": [TASK_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/TaskIn"}},
                    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/TaskFiles"}},
                },
            },
            "responses": {
                "200": _json("#/components/schemas/Task"),
                "400": _error("Invalid field"),
                "403": _error("Not an admin"),
                "404": _error("No such task"),
                **AUTH_ERRORS,
            },
        },
    },
    "/api/tasks/{task_id}/statistics": {
        "get": {
            "summary": "Item analysis of a task (admin): difficulty, discrimination and choices per "
            "question, KR-20",
            "parameters": [TASK_ID],
            "responses": {
                "200": _json("#/components/schemas/Statistics"),
                "404": _error("No such task (or not an admin)"),
                "409": _error("The task has no answer key"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/tasks/{task_id}/statistics.csv": {
        "get": {
            "summary": "The item analysis as CSV: question, difficulty, discrimination, a count per "
            "choice, blank, sheets, kr20",
            "parameters": [TASK_ID],
            "responses": {
                "200": {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}},
                "404": _error("No such task (or not an admin)"),
                "409": _error("The task has no answer key"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/batches/upload-chunk": {
        "post": {
            "summary": "Legacy chunked upload: one chunk per request; the last one completes the batch",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": CHUNK_FORM}}},
            "responses": {
                "200": _json("#/components/schemas/ChunkReceipt"),
                "400": _error(
                    "Invalid field, e.g. 'Invalid chunk_index 5 (total: 4)', or more than 32 form fields"
                ),
                "404": _error("'Upload <id> not found. Please restart upload.'"),
                "408": _error("The form sent nothing for idle_timeout"),
                "413": _error(
                    "'Chunk size N exceeds maximum 104857600', more than 64 KiB of form fields, or "
                    "'Quota exceeded: ...' (chunk 0: total_chunks x its size past the user's quota)"
                ),
                "423": _error("The same chunk is being written by another request"),
                **AUTH_ERRORS,
            },
        }
    },
    "/api/batches/upload": {
        "post": {
            "summary": "Upload one whole file in one request; returns its batch",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file", "upload_type"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "upload_type": {"type": "string", "enum": list(UPLOAD_TYPES)},
                                "task_id": {"type": "string", "pattern": "^[0-9]{8}$"},
                                "sha256": {
                                    "type": "string",
                                    "pattern": "^[0-9a-fA-F]{64}$",
                                    "description": "The file's sha256 (optional): a mismatch is a 400 and makes no batch",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json("#/components/schemas/Batch", "The batch"),
                "400": _error("Invalid field, or more than 32 form fields"),
                "408": _error("The form sent nothing for idle_timeout"),
                "413": _error(
                    "Larger than the maximum upload size, more than 64 KiB of form fields, or "
                    "'Quota exceeded: ...' (past the user's quota)"
                ),
                **AUTH_ERRORS,
            },
        }
    },
    "/files/": {
        "options": {
            "summary": "tus discovery: versions, extensions, maximum size",
            "security": [],
            "responses": {
                "200": {
                    "description": "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm headers"
                }
            },
        },
        "post": {
            "summary": "tus creation (with optional body: creation-with-upload; Upload-Concat for "
            "concatenation)",
            "parameters": [
                TUS_RESUMABLE,
                _tus_header("Upload-Length", "Total size in bytes"),
                _tus_header("Upload-Defer-Length", "1 to declare the length later"),
                _tus_header(
                    "Upload-Metadata",
                    "key base64value pairs: filename, filetype, "
                    "upload_type, task_id, sha256 (the whole file's, "
                    "hex: checked at completion)",
                ),
                _tus_header("Upload-Concat", "partial, or final;<url> <url> ..."),
            ],
            "responses": {
                "201": {"description": "Created; Location of the upload (Batch-Id if complete)"},
                "400": TUS_TEXT,
                "401": TUS_TEXT,
                "412": TUS_TEXT,
                "413": {
                    **TUS_TEXT,
                    "description": "Too large, or 'Quota exceeded: ...' (past the user's quota)",
                },
                "507": TUS_TEXT,
            },
        },
    },
    "/files/{upload_id}": {
        "head": {
            "summary": "tus: current offset, length, metadata, expiry",
            "parameters": [UPLOAD_ID, TUS_RESUMABLE],
            "responses": {
                "200": {"description": "Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires"},
                "404": {"description": "Unknown"},
                "410": {"description": "Expired or terminated"},
            },
        },
        "patch": {
            "summary": "tus: append bytes at Upload-Offset",
            "parameters": [
                UPLOAD_ID,
                TUS_RESUMABLE,
                _tus_header("Upload-Offset", "Where this body starts", True),
                _tus_header("Upload-Checksum", "algorithm base64digest (sha1, sha256, md5, crc32)"),
            ],
            "requestBody": {
                "content": {
                    "application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }
            },
            "responses": {
                "204": {"description": "Saved; the new Upload-Offset (Batch-Id when complete)"},
                "400": TUS_TEXT,
                "403": TUS_TEXT,
                "404": TUS_TEXT,
                "409": TUS_TEXT,
                "410": TUS_TEXT,
                "412": TUS_TEXT,
                "413": {
                    **TUS_TEXT,
                    "description": "Too large, or 'Quota exceeded: ...' (past the user's quota)",
                },
                "415": TUS_TEXT,
                "423": TUS_TEXT,
                "460": TUS_TEXT,
            },
        },
        "delete": {
            "summary": "tus termination of an incomplete upload; a completed one is deleted with its batch and every stored copy of its file",
            "parameters": [UPLOAD_ID, TUS_RESUMABLE],
            "responses": {
                "204": {"description": "Terminated, or deleted"},
                "404": TUS_TEXT,
                "410": TUS_TEXT,
            },
        },
        "get": {
            "summary": "Download a completed upload",
            "parameters": [UPLOAD_ID],
            "responses": {
                "200": {
                    "description": "The file",
                    "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                    },
                },
                "400": TUS_TEXT,
                "404": TUS_TEXT,
                "410": TUS_TEXT,
            },
        },
        "options": {
            "summary": "tus discovery",
            "security": [],
            "parameters": [UPLOAD_ID],
            "responses": {"200": {"description": "tus capability headers"}},
        },
    },
    "/healthz": {
        "get": {
            "summary": "Liveness",
            "security": [],
            "responses": {"200": _json("#/components/schemas/Health")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: database, store, free space, durable storage and its free space",
            "security": [],
            "responses": {
                "200": _json("#/components/schemas/Health"),
                "503": _json("#/components/schemas/Health", "Not ready"),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (admin): requests, bytes, upload events, lock waits, sheets, batches",
            "responses": {
                "200": {
                    "description": "Prometheus text format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "403": _error("Not an admin"),
                **AUTH_ERRORS,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1 document"}},
        }
    },
    **WEB_PAGE_PATHS,
    **ADMIN_PATHS,
}

SPEC = {
    "openapi": "3.1.0",
    "info": {
        "title": "omr-tus",
        "version": __version__,
        "description": "Resumable uploads (tus 1.0.0 and the legacy chunk API) of scanned exam sheets.",
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
    },
    "security": [{"bearer": []}],
}


@public
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
