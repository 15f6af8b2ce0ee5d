from io import StringIO

from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from labelapp.models import Assignment, Completion, LabelingRound, Prompt


def test_seed_demo_makes_users_and_a_round_of_real_answers(db):
    out = StringIO()
    call_command("seed_demo", "--prompts", "10", stdout=out)
    text = out.getvalue()
    round_ = LabelingRound.objects.get()
    assert round_.state == "labeling" and round_.prompts.count() == 10
    assert Prompt.objects.count() == 252  # every shipped instruction is imported
    for prompt in round_.prompts.all():
        answers = Completion.objects.filter(round=round_, prompt=prompt)
        assert answers.count() == 4
        assert len({c.source for c in answers}) == 4  # four different models
        assert all(c.source.startswith("self-instruct:") and c.text.strip() for c in answers)
        assert all(c.policy_version_id is None for c in answers)
    assert Assignment.objects.filter(round=round_, state="open").count() == 10

    # The printed passwords log in, and the labeler lands on a task.
    logins = dict(line.split() for line in text.splitlines() if line.startswith("  "))
    assert set(logins) == {"admin", "labeler1", "labeler2"}
    assert User.objects.get(username="admin").is_superuser
    client = Client()
    # Through the login form: axes (login throttling) wants the request that logs in.
    login = {"username": "labeler1", "password": logins["labeler1"]}
    assert client.post("/accounts/login/", login).status_code == 302
    assert client.get("/label/").status_code == 200

    # A second run keeps the round and prompts.
    call_command("seed_demo", stdout=StringIO())
    assert LabelingRound.objects.count() == 1 and Prompt.objects.count() == 252


def test_issue_token_prints_a_working_token(labeler, labeling_round):
    out = StringIO()
    call_command("issue_token", "alice", stdout=out)
    client = Client(headers={"authorization": f"Bearer {out.getvalue().strip()}"})
    assert client.get("/api/v1/tasks/next").status_code == 200
