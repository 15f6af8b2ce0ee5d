"""Hostile and malformed input on every write endpoint: a clear 4xx, and nothing changes.

Complements the contract cases of test_api_labeling.py (bad rankings, non-JSON bodies): here
wrong types, huge and overlong values, control and unicode edge cases, SQL- and HTML-looking
payloads, and path tricks in import file names.
"""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from labelapp.models import LabelingRound, Prompt, TrainingRun
from labelapp.services.assignment import assign_next
from labelapp.services.errors import ServiceError
from labelapp.services.imports import import_prompts
from labelapp.services.ranking import RankingSubmission, submit_ranking
from labelapp.services.tokens import issue_token
from labelapp.services.training import register_base_policy
from tests.conftest import db_snapshot

SQL = "A'); DROP TABLE labelapp_ranking; --"
HTML = "<img src=x onerror=alert(1)><script>alert(1)</script>"


def full_snapshot() -> dict:
    return {
        **db_snapshot(),
        "prompts": Prompt.objects.count(),
        "rounds": sorted(LabelingRound.objects.values_list("id", "state")),
        "runs": TrainingRun.objects.count(),
    }


@pytest.fixture
def api(labeler):
    return Client(headers={"authorization": f"Bearer {issue_token(labeler)}"})


@pytest.fixture
def task(api, labeling_round):
    return api.get("/api/v1/tasks/next").json()


RANKINGS = [
    ("sql as a label", {"ranking": [SQL, "B", "C", "D"]}),
    ("html as a label", {"ranking": [HTML, "B", "C", "D"]}),
    ("fullwidth letters", {"ranking": ["Ａ", "Ｂ", "Ｃ", "Ｄ"]}),
    ("label with a nul", {"ranking": ["A\x00", "B", "C", "D"]}),
    ("lower-case labels", {"ranking": ["a", "b", "c", "d"]}),
    ("ranking is an object", {"ranking": {"A": 1}}),
    ("ranking is null", {"ranking": None}),
    ("lists in a tie", {"ranking": [[["A"]], "B", "C", "D"]}),
    # Ties (a list inside the ranking) and "all bad".
    ("overlapping ties", {"ranking": [["A", "B"], ["B", "C"], "D"]}),
    ("a tie with an unknown label", {"ranking": [["A", "E"], "B", "C", "D"]}),
    ("an empty tie", {"ranking": ["A", [], "B", "C", "D"]}),
    ("a tie of numbers", {"ranking": [[1, 2], "C", "D"]}),
    ("all tied", {"ranking": [["A", "B", "C", "D"]]}),
    ("all bad without a better answer", {"all_bad": True}),
    ("all bad with a blank answer", {"all_bad": True, "demonstration": "  \n "}),
    ("all bad and a ranking", {"all_bad": True, "ranking": list("ABCD"), "demonstration": "x"}),
    ("all bad a string", {"all_bad": "yes", "demonstration": "x"}),
    ("quality true", {"ranking": list("ABCD"), "quality": True}),
    ("quality a float", {"ranking": list("ABCD"), "quality": 3.5}),
    ("quality huge", {"ranking": list("ABCD"), "quality": 10**30}),
    ("time a string", {"ranking": list("ABCD"), "time_spent_ms": "soon"}),
    ("time huge", {"ranking": list("ABCD"), "time_spent_ms": 10**30}),
    ("flags a list", {"ranking": list("ABCD"), "flags": ["harmful"]}),
    ("flag names a string", {"ranking": list("ABCD"), "flags": {"A": "harmful"}}),
    ("flag name html", {"ranking": list("ABCD"), "flags": {"A": [HTML]}}),
    ("flag name sql", {"ranking": list("ABCD"), "flags": {"A": [SQL]}}),
    ("demonstration a number", {"ranking": list("ABCD"), "demonstration": 42}),
    ("demonstration with a nul", {"ranking": list("ABCD"), "demonstration": "fine\x00then"}),
    ("submission id overlong", {"ranking": list("ABCD"), "client_submission_id": "x" * 101}),
    ("submission id an object", {"ranking": list("ABCD"), "client_submission_id": {"a": 1}}),
]


@pytest.mark.parametrize(("case", "body"), RANKINGS, ids=[c for c, _ in RANKINGS])
def test_a_hostile_ranking_is_4xx_with_a_message_and_changes_nothing(api, task, case, body):
    before = full_snapshot()
    url = f"/api/v1/assignments/{task['assignment_id']}/ranking"
    response = api.post(url, json.dumps(body), content_type="application/json")
    assert 400 <= response.status_code < 500, (response.status_code, response.content)
    assert response.json()["detail"]
    assert full_snapshot() == before


def test_a_body_over_the_upload_limit_is_refused(api, task, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    before = full_snapshot()
    body = {"ranking": list("ABCD"), "demonstration": "x" * 20_000}
    url = f"/api/v1/assignments/{task['assignment_id']}/ranking"
    response = api.post(url, json.dumps(body), content_type="application/json")
    assert response.status_code in (400, 413)
    assert full_snapshot() == before


SKIPS = [
    ("no reason", {}),
    ("reason a list", {"reason": ["a"]}),
    ("reason overlong", {"reason": "x" * 501}),
    ("reason with a nul", {"reason": "bad\x00"}),
    ("reason blank", {"reason": "   "}),
]


@pytest.mark.parametrize(("case", "body"), SKIPS, ids=[c for c, _ in SKIPS])
def test_a_hostile_skip_is_4xx_and_changes_nothing(api, task, case, body):
    before = full_snapshot()
    url = f"/api/v1/assignments/{task['assignment_id']}/skip"
    response = api.post(url, json.dumps(body), content_type="application/json")
    assert 400 <= response.status_code < 500, (response.status_code, response.content)
    assert full_snapshot() == before


TRAINS = [
    ("unknown method", {"method": "magic"}),
    ("html method", {"method": HTML}),
    ("method a number", {"method": 7}),
    ("unknown hyperparameter", {"method": "ppo", "learning_rat": 0.1}),
    ("hyperparameter of the wrong type", {"method": "ppo", "steps": "many"}),
    ("nested hyperparameters of the wrong type", {"method": "ppo", "reward": {"epochs": "x"}}),
    ("trust weighting not a boolean", {"method": "ppo", "reward": {"trust_weighting": "on"}}),
]


@pytest.mark.parametrize(("case", "body"), TRAINS, ids=[c for c, _ in TRAINS])
def test_a_hostile_train_request_is_4xx_and_starts_nothing(
    admin_user, labeler, labeling_round, case, body
):
    register_base_policy("/models/base")
    assignment = assign_next(labeler)  # a round with a ranking: only the request is wrong
    submit_ranking(labeler, assignment.pk, RankingSubmission(ranking=list("ABCD")))
    client = Client(headers={"authorization": f"Bearer {issue_token(admin_user)}"})
    before = full_snapshot()
    url = f"/api/v1/rounds/{labeling_round.pk}/train"
    response = client.post(url, json.dumps(body), content_type="application/json")
    assert 400 <= response.status_code < 500, (response.status_code, response.content)
    assert full_snapshot() == before


IMPORT_NAMES = [
    "/etc/passwd",
    "prompts.jsonl\x00.csv",
    "prompts.exe",
    "..",
]


@pytest.mark.parametrize("name", IMPORT_NAMES)
def test_an_import_file_name_cannot_reach_outside_or_change_the_format(admin_user, name):
    before = full_snapshot()
    with pytest.raises(ServiceError) as refused:
        import_prompts(name, b'{"prompt": "x"}\n')
    assert str(refused.value)
    assert full_snapshot() == before


IMPORT_BODIES = [
    ("nul in a prompt", b'{"prompt": "a\\u0000b"}\n'),
    ("prompt an object", b'{"prompt": {"x": 1}}\n'),
    ("tags a number", b'{"prompt": "ok", "tags": 5}\n'),
    ("overlong prompt", b'{"prompt": "' + b"x" * 20_001 + b'"}\n'),
    ("top-level list", b'["prompt"]\n'),
    ("not utf-8", b'{"prompt": "caf\xe9"}\n'),
]


def test_an_uploaded_file_name_is_reduced_to_its_last_part(admin_user, client):
    client.force_login(admin_user)
    upload = SimpleUploadedFile("../../etc/passwd.jsonl", b'{"prompt": "x"}\n')
    client.post(reverse("console:import"), {"kind": "prompts", "file": upload})
    assert Prompt.objects.get().source == "passwd.jsonl"  # a name, never a path


@pytest.mark.parametrize(("case", "data"), IMPORT_BODIES, ids=[c for c, _ in IMPORT_BODIES])
def test_a_hostile_import_from_the_console_is_refused_with_its_line(admin_user, client, case, data):
    client.force_login(admin_user)
    before = full_snapshot()
    upload = SimpleUploadedFile("hostile.jsonl", data)
    response = client.post(reverse("console:import"), {"kind": "prompts", "file": upload})
    assert response.status_code == 200 and "line 1" in response.content.decode()
    assert full_snapshot() == before


def test_html_and_sql_in_prompts_are_stored_verbatim_and_rendered_inert(
    admin_user, client, labeler
):
    import_prompts("p.jsonl", json.dumps({"prompt": HTML + SQL}).encode() + b"\n")
    assert Prompt.objects.get().text == HTML + SQL
    client.force_login(admin_user)
    metrics = {"versions": [1, 2], "samples": [{"prompt": HTML, "first": HTML, "second": SQL}]}
    run = TrainingRun.objects.create(kind="compare", status="succeeded", metrics=metrics)
    page = client.get(reverse("console:run", args=[run.pk])).content.decode()
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
