"""Who may do what: the two roles of the product and the checks views start with."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db.models import Exists, OuterRef

LABELERS = "labelers"
ADMINS = "admins"


def role_annotations(user_field: str) -> dict[str, Exists]:
    """Annotations that read the user's roles in the query that loads them (the API's token
    lookup), saving a query per request; hand the row to `remember_roles`."""
    in_group = Group.objects.filter(user=OuterRef(user_field))
    return {
        "_in_admins": Exists(in_group.filter(name=ADMINS)),
        "_in_labelers": Exists(in_group.filter(name=LABELERS)),
    }


def remember_roles(user: AbstractBaseUser, row) -> None:
    """Keep the group memberships `role_annotations` read on `row` with the user object."""
    user._roles = {ADMINS: row._in_admins, LABELERS: row._in_labelers}


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
