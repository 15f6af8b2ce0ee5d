"""Bearer tokens for API clients (`manage.py issue_token USER`)."""

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from labelapp.access import remember_roles, role_annotations
from labelapp.models import ApiToken

# last_used_at is for an admin's "is this token still in use?": to the minute is enough, and a
# write (a commit waiting on the disk) on every API call is not.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def issue_token(user: AbstractBaseUser, name: str = "") -> str:
    """Create a token for `user` and return it; only its hash is stored, so show it once."""
    raw = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_hash=_digest(raw), name=name)
    return raw


def user_for_token(raw: str) -> AbstractBaseUser | None:
    """The active user a token belongs to, or None."""
    token = (
        ApiToken.objects.select_related("user")
        .annotate(**role_annotations("user_id"))
        .filter(key_hash=_digest(raw))
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    remember_roles(token.user, token)
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
