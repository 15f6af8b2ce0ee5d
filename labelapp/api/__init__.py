"""The JSON API, /api/v1 (contract in ARCHITECTURE.md; schema at /api/v1/openapi.json).

django-ninja: the request and response shapes are typed Schemas that validate the body and
produce the OpenAPI document, with far less code than DRF serializers and viewsets.
"""

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest
from ninja import NinjaAPI

from labelapp.api.auth import BearerToken, SessionWithCsrf
from labelapp.api.labeling import router as labeling_router
from labelapp.api.rounds import router as rounds_router
from labelapp.services.errors import ServiceError

api = NinjaAPI(
    title="RLHF labeling API",
    version="1",
    urls_namespace="api",
    auth=[BearerToken(), SessionWithCsrf()],
    docs_url=None,  # ninja's docs page loads scripts from a CDN; our CSP forbids that
    openapi_url="/openapi.json",
)
api.add_router("", labeling_router)
api.add_router("", rounds_router)


@api.exception_handler(ServiceError)
def service_error(request: HttpRequest, exc: ServiceError):
    return api.create_response(request, {"detail": exc.detail}, status=exc.status)


def database_error(request: HttpRequest, exc: Exception):
    """Re-raise, so DatabaseUnavailableMiddleware answers a lost connection with 503.

    Ninja's own handler of other exceptions would answer 500 with a traceback when DEBUG is on.
    """
    raise exc


api.add_exception_handler(OperationalError, database_error)
api.add_exception_handler(InterfaceError, database_error)
