"""The JSON API under /api: auth, batches (later tasks and results)."""
