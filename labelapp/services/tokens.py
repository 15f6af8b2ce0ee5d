"""Bearer tokens for API clients (`manage.py issue_token USER`)."""

import hashlib
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from labelapp.models import ApiToken


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def issue_token(user: AbstractBaseUser, name: str = "") -> str:
    """Create a token for `user` and return it; only its hash is stored, so show it once."""
    raw = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_hash=_digest(raw), name=name)
    return raw


def user_for_token(raw: str) -> AbstractBaseUser | None:
    """The active user a token belongs to, or None."""
    token = ApiToken.objects.select_related("user").filter(key_hash=_digest(raw)).first()
    if token is None or not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user
