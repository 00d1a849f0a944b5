"""The HTTP edge the API (``api/``) and the pages (``web/``) share: signing in from a
request, and the HTTP status of each error. The two entry points are siblings: neither
imports the other (tests/test_layers.py)."""
