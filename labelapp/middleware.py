"""A database outage answers 503 with a clear message instead of a 500.

When PostgreSQL is down or restarting, a request fails on its connection (refused, or closed
under it). Every write is one transaction, so nothing was saved: the client should retry. Django
closes the broken connection at the end of the request (it checks a connection that raised), and
`conn_health_checks` tests a reused one before the next request, so the same gunicorn workers
reconnect as soon as the database is back.
"""

import logging

from django.db import InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MESSAGE = "The database is unavailable; nothing was saved. Retry shortly."
PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Service unavailable</title></head>
<body><h1>Service unavailable</h1><p>{MESSAGE}</p></body></html>
"""


def connection_lost(exc: Exception) -> bool:
    """True when `exc` means the database connection itself is gone (not a bad query or lock).

    A failed connect leaves no connection; a connection closed by the server (or by Django,
    after a failed rollback) reports itself closed. SQLite's "database is locked" keeps its
    connection and stays a 500.
    """
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    return any(
        conn.connection is None or getattr(conn.connection, "closed", False)
        for conn in connections.all(initialized_only=True)
    )


class DatabaseUnavailableMiddleware:
    """Turn a lost database connection into 503 + Retry-After (JSON under /api/, else HTML)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not connection_lost(exception):
            return None
        log.warning("database unavailable on %s %s: %s", request.method, request.path, exception)
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": MESSAGE}, status=503)
        else:
            response = HttpResponse(PAGE, status=503, content_type="text/html; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
