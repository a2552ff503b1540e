"""The tus 1.0.0 protocol layer: header parsing and the /files/ routes."""
