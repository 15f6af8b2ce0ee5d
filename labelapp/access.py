"""Who may do what: the two roles of the product and the checks views start with."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

LABELERS = "labelers"
ADMINS = "admins"


def remember_roles(user: AbstractBaseUser, *, admin: bool, labeler: bool) -> None:
    """Keep group memberships read with the user (the API's token lookup reads them in the
    same statement), so the checks below need no query of their own."""
    user._roles = {ADMINS: admin, LABELERS: labeler}


def _in_group(user: AbstractBaseUser, name: str) -> bool:
    roles = getattr(user, "_roles", None)
    if roles is not None:
        return roles[name]
    return user.groups.filter(name=name).exists()


def is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Admins run rounds and training: superusers and members of the `admins` group."""
    if not user.is_authenticated:
        return False
    return user.is_superuser or _in_group(user, ADMINS)


def is_labeler(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Labelers rank completions: members of `labelers` (admins may label too)."""
    if not user.is_authenticated:
        return False
    return _in_group(user, LABELERS) or is_admin(user)


def role_required(check: Callable[[AbstractBaseUser | AnonymousUser], bool], refusal: str):
    """A view decorator: login required (redirect to login), then `check(user)` (403)."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if not check(request.user):
                raise PermissionDenied(refusal)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


admin_required = role_required(is_admin, "only admins may use the console")
labeler_required = role_required(is_labeler, "only labelers may label")
