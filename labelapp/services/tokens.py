"""Bearer tokens for API clients (`manage.py issue_token USER`)."""

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from labelapp.access import ADMINS, LABELERS, remember_roles
from labelapp.models import ApiToken
from labelapp.services import sql

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


# The API's first statement on every call, so hand-written (labelapp/services/sql.py says why).
_USER_BY_KEY_HASH = """
    SELECT t.id, t.last_used_at IS NULL OR t.last_used_at <= %s,
           u.id, u.username, u.is_active, u.is_superuser, u.is_staff,
           EXISTS (SELECT 1 FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id
                   WHERE ug.user_id = u.id AND g.name = %s),
           EXISTS (SELECT 1 FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id
                   WHERE ug.user_id = u.id AND g.name = %s)
    FROM labelapp_apitoken t
    JOIN auth_user u ON u.id = t.user_id
    WHERE t.key_hash = %s"""


def user_for_token(raw: str) -> AbstractBaseUser | None:
    """The active user a token belongs to (with their roles), or None."""
    now = timezone.now()
    row = sql.fetch_one(
        _USER_BY_KEY_HASH,
        [sql.db_datetime(now - LAST_USED_RESOLUTION), ADMINS, LABELERS, _digest(raw)],
    )
    if row is None:
        return None
    token_id, stale, user_id, username, active, superuser, staff, admin, labeler = row
    if not active:
        return None
    user = sql.instance(
        get_user_model(),
        id=user_id,
        username=username,
        is_active=True,
        is_superuser=bool(superuser),
        is_staff=bool(staff),
    )
    remember_roles(user, admin=bool(admin), labeler=bool(labeler))
    if stale:
        ApiToken.objects.filter(pk=token_id).update(last_used_at=now)
    return user
