"""IETF "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload, interop versions
3 to 8) at /files/, beside tus and on the same uploads: `headers.py` says what each interop
version puts on the wire, `handlers.py` holds one function per method."""
