"""The omr-tus command-line client: login, upload (tus or the legacy chunk API), batches.

It talks to a server over HTTP only, so it runs on any machine that can reach one; nothing
here imports the server's modules.
"""
