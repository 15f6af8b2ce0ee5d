"""Who may do what: the two roles of the product and the checks views start with."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

LABELERS = "labelers"
ADMINS = "admins"


def is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Admins run rounds and training: superusers and members of the `admins` group."""
    if not user.is_authenticated:
        return False
    return user.is_superuser or user.groups.filter(name=ADMINS).exists()


def is_labeler(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Labelers rank completions: members of `labelers` (admins may label too)."""
    if not user.is_authenticated:
        return False
    return user.groups.filter(name=LABELERS).exists() or is_admin(user)
