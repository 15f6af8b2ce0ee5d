"""Who may do what: the two roles of the product and the checks views start with."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

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
