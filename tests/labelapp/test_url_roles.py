"""Roles over every URL of the project: one table says who may use each pattern.

The table is checked against Django's resolver, so a new URL that nobody classified fails the
suite. Each pattern is called with real object ids, by each role, with each method it accepts:
anonymous visitors are sent to a login page (pages) or get 401 (API); a signed-in user outside
the groups gets 403; labelers get 403 on the console, training, exports and admin API, and are
sent to the admin login by Django's admin; admins get through everywhere that is theirs.
"""

import json
import re
from dataclasses import dataclass

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.apps import apps
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from labelapp.access import ADMINS, LABELERS
from labelapp.models import PolicyVersion, RewardModelVersion, TrainingRun
from labelapp.services.assignment import assign_next
from labelapp.services.ranking import RankingSubmission, submit_ranking
from labelapp.services.tokens import issue_token
from labelapp.services.training import register_base_policy
from tests.conftest import make_round, make_user

pytestmark = pytest.mark.django_db

# What a role gets. OK: the view ran for them (any answer but a refusal, a 404 or a 5xx).
OK, LOGIN, ADMIN_LOGIN, UNAUTHORIZED, FORBIDDEN, NOT_FOUND = (
    "ok",
    "redirect to /accounts/login/",
    "redirect to /admin/login/",
    "401",
    "403",
    "404",
)
ROLES = ("anonymous", "outsider", "labeler", "admin", "superuser")


def expect(anonymous, outsider, labeler, admin, superuser) -> dict[str, str]:
    return dict(zip(ROLES, (anonymous, outsider, labeler, admin, superuser), strict=True))


# Kinds of URL, and what each role gets on them. "admin" is a member of the admins group (the
# console's role); "superuser" is a staff superuser in that group (what ensure_admin creates).
PUBLIC = expect(OK, OK, OK, OK, OK)
SIGNED_IN = expect(LOGIN, OK, OK, OK, OK)
LABELER_PAGE = expect(LOGIN, FORBIDDEN, OK, OK, OK)
CONSOLE = expect(LOGIN, FORBIDDEN, FORBIDDEN, OK, OK)
API_LABELER = expect(UNAUTHORIZED, FORBIDDEN, OK, OK, OK)
API_ADMIN = expect(UNAUTHORIZED, FORBIDDEN, FORBIDDEN, OK, OK)
NOWHERE = expect(NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND)
STAFF = expect(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, OK)
# Rankings, comparisons and axes' logs are evidence: nobody adds them by hand, not even staff.
STAFF_NO_ADD = expect(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, FORBIDDEN)
STAFF_NOT_FOUND = expect(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, NOT_FOUND)

GET, POST, BOTH = ("get",), ("post",), ("get", "post")

# Every URL pattern of the project: {route: (kind, methods)}.
TABLE: dict[str, tuple[dict, tuple]] = {
    # The labeler's pages.
    "": (SIGNED_IN, GET),
    "label/": (LABELER_PAGE, GET),
    "label/assignments/<int:assignment_id>/rank": (LABELER_PAGE, POST),
    "label/assignments/<int:assignment_id>/skip": (LABELER_PAGE, POST),
    # The admins' console (rounds, training, policies, imports, exports, quality).
    "console/": (CONSOLE, GET),
    "console/rounds/new": (CONSOLE, BOTH),
    "console/rounds/<int:round_id>/": (CONSOLE, GET),
    "console/rounds/<int:round_id>/live": (CONSOLE, GET),
    "console/rounds/<int:round_id>/train": (CONSOLE, POST),
    "console/rounds/<int:round_id>/close": (CONSOLE, POST),
    "console/rounds/<int:round_id>/gold": (CONSOLE, POST),
    "console/rounds/<int:round_id>/gold-tasks": (CONSOLE, POST),
    "console/rounds/<int:round_id>/export/<str:fmt>": (CONSOLE, GET),
    "console/runs/<int:run_id>/": (CONSOLE, GET),
    "console/runs/<int:run_id>/live": (CONSOLE, GET),
    "console/runs/<int:run_id>/retry": (CONSOLE, POST),
    "console/runs/<int:run_id>/cancel": (CONSOLE, POST),
    "console/policies/": (CONSOLE, GET),
    "console/policies/<int:version_id>/current": (CONSOLE, BOTH),
    "console/policies/compare": (CONSOLE, POST),
    "console/import": (CONSOLE, BOTH),
    "console/quality": (CONSOLE, GET),
    # Django's auth pages.
    "accounts/login/": (PUBLIC, BOTH),
    "accounts/logout/": (PUBLIC, POST),  # signed out or not, it ends on the login page
    "accounts/password_change/": (SIGNED_IN, BOTH),
    "accounts/password_change/done/": (SIGNED_IN, GET),
    "accounts/password_reset/": (PUBLIC, BOTH),
    "accounts/password_reset/done/": (PUBLIC, GET),
    "accounts/reset/<uidb64>/<token>/": (PUBLIC, GET),
    "accounts/reset/done/": (PUBLIC, GET),
    # The JSON API.
    "api/v1/": (NOWHERE, GET),  # ninja's docs root; the docs page is off
    "api/v1/openapi.json": (PUBLIC, GET),
    "api/v1/tasks/next": (API_LABELER, GET),
    "api/v1/assignments/<assignment_id>/ranking": (API_LABELER, POST),
    "api/v1/assignments/<assignment_id>/skip": (API_LABELER, POST),
    "api/v1/rounds": (API_ADMIN, BOTH),
    "api/v1/rounds/<round_id>": (API_ADMIN, GET),
    "api/v1/rounds/<round_id>/train": (API_ADMIN, POST),
    "api/v1/training-runs/<run_id>": (API_ADMIN, GET),
    "api/v1/policy-versions": (API_ADMIN, GET),
    "api/v1/rounds/<round_id>/export": (API_ADMIN, GET),
    # Django's admin: staff only; everyone else is sent to its login page.
    "admin/": (STAFF, GET),
    "admin/login/": (PUBLIC, GET),
    "admin/logout/": (PUBLIC, POST),
    "admin/password_change/": (STAFF, GET),
    "admin/password_change/done/": (STAFF, GET),
    "admin/autocomplete/": (STAFF, GET),
    "admin/jsi18n/": (STAFF, GET),
    "admin/r/<path:content_type_id>/<path:object_id>/": (STAFF_NOT_FOUND, GET),  # no public URL
    "admin/^(?P<app_label>auth|labelapp|axes)/$": (STAFF, GET),
    "admin/(?P<url>.*)$": (STAFF_NOT_FOUND, GET),
    "admin/auth/user/<id>/password/": (STAFF, GET),
}

# Django's admin, per registered model: its list, add, history, delete, change and the
# redirect from the bare object URL.
ADMIN_MODELS = {
    "auth/group": STAFF,
    "auth/user": STAFF,
    "labelapp/prompt": STAFF,
    "labelapp/policyversion": STAFF,
    "labelapp/rewardmodelversion": STAFF,
    "labelapp/labelinground": STAFF,
    "labelapp/completion": STAFF,
    "labelapp/assignment": STAFF,
    "labelapp/ranking": STAFF_NO_ADD,
    "labelapp/comparison": STAFF_NO_ADD,
    "labelapp/demonstration": STAFF,
    "labelapp/trainingrun": STAFF,
    "labelapp/apitoken": STAFF,
    "axes/accessattempt": STAFF_NO_ADD,
    "axes/accesslog": STAFF_NO_ADD,
    "axes/accessfailurelog": STAFF_NO_ADD,
}
for _model, _add in ADMIN_MODELS.items():
    TABLE[f"admin/{_model}/"] = (STAFF, GET)
    TABLE[f"admin/{_model}/add/"] = (_add, GET)
    for _view in ("history/", "delete/", "change/", ""):
        TABLE[f"admin/{_model}/<path:object_id>/{_view}"] = (STAFF, GET)


# What a call sends beyond the path: a body that would succeed for a permitted user (so that
# a refusal is the role check, not validation) and the query an admin view needs.
API_BODIES = {
    "api/v1/assignments/<assignment_id>/ranking": {"ranking": ["A", "B", "C", "D"]},
    "api/v1/assignments/<assignment_id>/skip": {"reason": "unclear prompt"},
    "api/v1/rounds/<round_id>/train": {"method": "dpo"},
    "api/v1/rounds": {"prompts": 1, "k": 2},
}
QUERIES = {"admin/autocomplete/": "?app_label=labelapp&model_name=completion&field_name=prompt"}


def project_routes() -> list[str]:
    """Every URL pattern Django knows, as one route string from the root.

    Ninja adds one pattern per operation of a path (for reversing by name); the first serves
    every method of the path, so an API path counts once.
    """
    routes = []

    def walk(resolver: URLResolver, prefix: str) -> None:
        for pattern in resolver.url_patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLPattern):
                if not (route.startswith("api/v1/") and route in routes):
                    routes.append(route)
            else:
                walk(pattern, route)

    walk(get_resolver(), "")
    return routes


@dataclass
class World:
    """The objects the URLs point at, and one user per role."""

    users: dict[str, User | None]
    round_id: int
    run_id: int
    version_id: int
    assignments: dict[str, int]  # each role's own assignment (anonymous: the labeler's)
    admin_objects: dict[str, int]  # "app/model" -> a pk


@pytest.fixture
def world(db) -> World:
    round_ = make_round(n_prompts=6)
    users = {
        "anonymous": None,
        "outsider": make_user("mallory"),
        "labeler": make_user("alice", LABELERS),
        "admin": make_user("root", ADMINS),
        "superuser": make_user("boss", ADMINS),
    }
    User.objects.filter(username="boss").update(is_staff=True, is_superuser=True)
    users["superuser"].refresh_from_db()
    ranker = make_user("bob", LABELERS)
    ranked = assign_next(ranker)
    submit_ranking(ranker, ranked.pk, RankingSubmission(list("ABCD"), demonstration="Better."))
    assignments = {r: assign_next(users[r]).pk for r in ("labeler", "admin", "superuser")}
    assignments["anonymous"] = assignments["outsider"] = assignments["labeler"]
    version = register_base_policy("/models/base")
    run = TrainingRun.objects.create(round=round_, kind="reward", status="failed", error="boom")
    RewardModelVersion.objects.create(number=1, round=round_, artifact_path="/models/rm-1")
    issue_token(ranker)
    axes_fields = {"username": "alice", "ip_address": "203.0.113.7", "user_agent": "test"}
    AccessAttempt.objects.create(**axes_fields, failures_since_start=1, get_data="", post_data="")
    AccessLog.objects.create(**axes_fields)
    AccessFailureLog.objects.create(**axes_fields)
    admin_objects = {}
    for name in ADMIN_MODELS:
        model = apps.get_model(*name.split("/"))
        admin_objects[name] = model.objects.order_by("pk").values_list("pk", flat=True)[0]
    return World(users, round_.pk, run.pk, version.pk, assignments, admin_objects)


def url_for(route: str, world: World, role: str) -> str:
    """The route with its parameters filled by real ids (the role's own assignment)."""
    model = next((m for m in ADMIN_MODELS if route.startswith(f"admin/{m}/")), "auth/user")
    values = {
        "round_id": world.round_id,
        "run_id": world.run_id,
        "version_id": world.version_id,
        "assignment_id": world.assignments[role],
        "fmt": "trl",
        "uidb64": "MQ",
        "token": "not-a-real-token",
        "object_id": world.admin_objects[model],
        "id": world.users["labeler"].pk,
        "content_type_id": ContentType.objects.get_for_model(PolicyVersion).pk,
        "app_label": "labelapp",
        "url": "no-such-page/",
    }
    filled = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(values[m[1]]), route)  # re_path
    filled = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m[1]]), filled)  # path
    return "/" + filled.replace("^", "").replace("$", "") + QUERIES.get(route, "")


def outcome(response) -> str:
    """What a response means to the table."""
    status = response.status_code
    location = response.get("Location", "")
    if status == 302 and location.startswith("/accounts/login/?next="):
        return LOGIN
    if status == 302 and location.startswith("/admin/login/?next="):
        return ADMIN_LOGIN
    if status in (401, 403, 404):
        return str(status)
    if status >= 500:
        return f"server error {status}"
    return OK


def call(world: World, role: str, method: str, route: str, bearer: bool) -> str:
    """One request by `role`, in a savepoint rolled back after it: every call sees the same data."""
    with transaction.atomic():
        user = world.users[role]
        client = Client()
        if user is not None and bearer:
            client = Client(headers={"authorization": f"Bearer {issue_token(user)}"})
        elif user is not None:
            client.force_login(user)
        url = url_for(route, world, role)
        if method == "post" and route.startswith("api/"):
            body = json.dumps(API_BODIES[route])
            response = client.post(url, body, content_type="application/json")
        elif method == "post":
            response = client.post(url, {})
        else:
            response = client.get(url)
        if response.streaming:
            b"".join(response.streaming_content)
        transaction.set_rollback(True)
    return outcome(response)


def test_every_url_pattern_is_classified_in_the_table():
    routes = project_routes()
    assert len(routes) == len(set(routes))
    assert set(routes) - set(TABLE) == set(), "new URL patterns: add them to TABLE"
    assert set(TABLE) - set(routes) == set(), "TABLE names URL patterns that no longer exist"


def test_every_filled_url_resolves_to_its_own_pattern(world):
    for route in TABLE:
        match = resolve(url_for(route, world, "labeler").split("?")[0])
        assert match.route == route.replace("^", ""), route  # Django drops an include's "^"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_what_the_table_says_on_every_url(world, role):
    wrong = []
    for route, (kind, methods) in TABLE.items():
        ways = (False, True) if route.startswith("api/v1/") and role != "anonymous" else (False,)
        for method in methods:
            for bearer in ways:
                got = call(world, role, method, route, bearer)
                if got != kind[role]:
                    how = "bearer" if bearer else "session"
                    url = url_for(route, world, role)
                    wrong.append(f"{method.upper()} {url} ({how}): {got}, expected {kind[role]}")
    assert wrong == [], "\n".join(wrong)


def test_labelers_are_refused_training_exports_and_the_console_in_the_table():
    for route in (
        "console/",
        "console/rounds/<int:round_id>/train",
        "console/rounds/<int:round_id>/export/<str:fmt>",
        "api/v1/rounds/<round_id>/train",
        "api/v1/rounds/<round_id>/export",
        "api/v1/rounds",
        "api/v1/policy-versions",
    ):
        assert TABLE[route][0]["labeler"] == FORBIDDEN, route
