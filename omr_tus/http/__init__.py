"""Cross-cutting HTTP pieces: app keys, middlewares, URL building."""
