"""Admin endpoints: labelers and outsiders get 403, anonymous 401/login, admins get through."""

import json

import pytest
from django.test import Client

from labelapp.models import Ranking, TrainingRun
from labelapp.services.assignment import assign_next
from labelapp.services.ranking import RankingSubmission, submit_ranking
from labelapp.services.tokens import issue_token


def token_client(user):
    return Client(headers={"authorization": f"Bearer {issue_token(user)}"})


def admin_calls(round_id):
    return [
        ("get", "/api/v1/rounds", None),
        ("get", f"/api/v1/rounds/{round_id}", None),
        ("post", f"/api/v1/rounds/{round_id}/train", {"method": "ppo"}),
        ("get", "/api/v1/training-runs/1", None),
        ("get", f"/api/v1/rounds/{round_id}/export?format=trl", None),
    ]


def call(client, method, url, body):
    if method == "get":
        return client.get(url)
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("who", ["labeler", "outsider"])
def test_non_admins_get_403_on_every_admin_endpoint(request, labeling_round, who):
    client = token_client(request.getfixturevalue(who))
    for method, url, body in admin_calls(labeling_round.pk):
        assert call(client, method, url, body).status_code == 403, url
    assert TrainingRun.objects.count() == 0
    labeling_round.refresh_from_db()
    assert labeling_round.state == "labeling"


def test_anonymous_gets_401_on_the_api_and_the_login_page_elsewhere(labeling_round):
    client = Client()
    for method, url, body in admin_calls(labeling_round.pk):
        assert call(client, method, url, body).status_code == 401, url
    response = client.get("/admin/")
    assert response.status_code == 302 and "login" in response["Location"]


def test_a_labeler_cannot_use_django_admin(labeler):
    client = Client()
    client.force_login(labeler)
    assert client.get("/admin/labelapp/ranking/").status_code == 302  # to admin login


def test_admins_see_rounds_with_progress(admin_user, labeler, labeling_round):
    a = assign_next(labeler)
    submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("ABCD")))
    client = token_client(admin_user)
    rounds = client.get("/api/v1/rounds").json()
    assert [r["number"] for r in rounds] == [labeling_round.number]
    one = client.get(f"/api/v1/rounds/{labeling_round.pk}").json()
    assert one["counts"]["submitted"] == 1 and one["counts"]["total"] == 3
    assert one["progress"] == pytest.approx(1 / 3)
    assert one["agreement"] is None  # overlap 1: nothing to agree on


def test_export_streams_one_trl_row_per_comparison(admin_user, labeler, labeling_round):
    a = assign_next(labeler)
    submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("DCBA")))
    response = token_client(admin_user).get(f"/api/v1/rounds/{labeling_round.pk}/export")
    assert response.status_code == 200
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert len(rows) == 6
    best = Ranking.objects.get().order[0]
    assert {"prompt", "chosen", "rejected"} == set(rows[0])
    assert rows[0]["prompt"] == a.prompt.text
    from labelapp.models import Completion

    assert rows[0]["chosen"] == Completion.objects.get(pk=best).text


def test_train_needs_rankings_then_queues_a_run(admin_user, labeler, labeling_round):
    client = token_client(admin_user)
    url = f"/api/v1/rounds/{labeling_round.pk}/train"
    assert call(client, "post", url, {"method": "ppo"}).status_code == 409
    assert call(client, "post", url, {"method": "sgd"}).status_code == 422
    a = assign_next(labeler)
    submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("ABCD")))
    response = call(client, "post", url, {"method": "dpo", "beta": 0.1})
    assert response.status_code == 202
    run = TrainingRun.objects.get(pk=response.json()["training_run_id"])
    assert run.status == "queued" and run.kind == "reward"
    assert run.config == {"method": "dpo", "hyperparameters": {"beta": 0.1}}
    labeling_round.refresh_from_db()
    assert labeling_round.state == "training"
    status = client.get(f"/api/v1/training-runs/{run.pk}").json()
    assert (status["status"], status["round"]) == ("queued", labeling_round.number)
