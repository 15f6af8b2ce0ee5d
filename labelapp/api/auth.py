"""API authentication: a Bearer token, or the browser session with its CSRF token."""

from django.conf import settings
from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer
from ninja.security.apikey import APIKeyCookie
from ninja.utils import check_csrf

from labelapp.access import is_admin, is_labeler
from labelapp.services.tokens import user_for_token


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>` from `manage.py issue_token USER`."""

    def authenticate(self, request: HttpRequest, token: str):
        return user_for_token(token)


class SessionWithCsrf(APIKeyCookie):
    """Django's session cookie. Writes need the CSRF token, as every form does.

    Unlike ninja's SessionAuth, an anonymous request is a plain 401 (not a CSRF 403).
    """

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None):
        if not request.user.is_authenticated:
            return None
        if check_csrf(request):
            raise HttpError(403, "CSRF check failed: send the X-CSRFToken header")
        return request.user


def require_labeler(request: HttpRequest):
    """The authenticated user if they may label, else 403."""
    if not is_labeler(request.auth):
        raise HttpError(403, "only labelers may do this")
    return request.auth


def require_admin(request: HttpRequest):
    """The authenticated user if they are an admin, else 403."""
    if not is_admin(request.auth):
        raise HttpError(403, "only admins may do this")
    return request.auth
