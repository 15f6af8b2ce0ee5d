"""The admins' console: who may use it, and that each page and action does what it says."""

import json

import pytest
from django.urls import reverse

from labelapp.models import (
    Assignment,
    LabelingRound,
    PolicyVersion,
    Prompt,
    Ranking,
    RewardModelVersion,
    TrainingRun,
)
from labelapp.services.assignment import assign_next
from labelapp.services.ranking import RankingSubmission, submit_ranking
from labelapp.services.training import claim_run, fail_run, make_current, register_base_policy
from tests.conftest import db_snapshot, make_round


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def ranked_round(labeler, labeling_round):
    assignment = assign_next(labeler)
    submit_ranking(labeler, assignment.pk, RankingSubmission(ranking=list("BADC")))
    register_base_policy("/models/base")
    return labeling_round


def console_urls(round_: LabelingRound, run: TrainingRun, version: PolicyVersion) -> list[tuple]:
    """Every console URL with its method."""
    r, t, v = round_.pk, run.pk, version.pk
    return [
        ("get", reverse("console:dashboard")),
        ("get", reverse("console:round_new")),
        ("post", reverse("console:round_new")),
        ("get", reverse("console:round", args=[r])),
        ("get", reverse("console:round_live", args=[r])),
        ("post", reverse("console:round_train", args=[r])),
        ("post", reverse("console:round_close", args=[r])),
        ("post", reverse("console:round_gold", args=[r])),
        ("post", reverse("console:round_gold_tasks", args=[r])),
        ("get", reverse("console:round_export", args=[r, "trl"])),
        ("get", reverse("console:run", args=[t])),
        ("get", reverse("console:run_live", args=[t])),
        ("post", reverse("console:run_retry", args=[t])),
        ("post", reverse("console:run_cancel", args=[t])),
        ("get", reverse("console:policies")),
        ("get", reverse("console:current", args=[v])),
        ("post", reverse("console:current", args=[v])),
        ("post", reverse("console:compare")),
        ("get", reverse("console:import")),
        ("post", reverse("console:import")),
        ("get", reverse("console:quality")),
    ]


def test_a_labeler_gets_403_on_every_console_url_and_changes_nothing(client, labeler, ranked_round):
    run = TrainingRun.objects.create(round=ranked_round, kind="reward")
    version = PolicyVersion.objects.get(number=1)
    client.force_login(labeler)
    before = (db_snapshot(), ranked_round.state, run.status)
    for method, url in console_urls(ranked_round, run, version):
        assert getattr(client, method)(url).status_code == 403, url
    ranked_round.refresh_from_db()
    run.refresh_from_db()
    assert (db_snapshot(), ranked_round.state, run.status) == before


def test_anonymous_visitors_are_sent_to_the_login_page(client, ranked_round):
    run = TrainingRun.objects.create(round=ranked_round, kind="reward")
    for method, url in console_urls(ranked_round, run, PolicyVersion.objects.get(number=1)):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_an_admin_lands_on_the_console(admin_client):
    assert admin_client.get("/").url == reverse("console:dashboard")


def test_dashboard_lists_rounds_with_progress(admin_client, ranked_round):
    page = admin_client.get(reverse("console:dashboard")).content.decode()
    assert f"Round {ranked_round.number}" in page
    assert "1 / 3 ranked" in page


def test_creating_a_round_queues_its_generation_for_the_chosen_labelers(
    admin_client, labeler, other_labeler
):
    register_base_policy("/models/base")
    for i in range(5):
        Prompt.objects.create(text=f"Question {i}", source="mine", tags=["x"] if i < 3 else [])
    Prompt.objects.create(text="Other source", source="theirs", tags=["x"])
    form = {"prompts": 10, "source": "mine", "tag": "x", "k": 3, "overlap": 2}
    form |= {"labelers": [labeler.pk], "max_new_tokens": 16, "temperature": 0.7, "seed": 1}
    response = admin_client.post(reverse("console:round_new"), form | {"selection": "random"})
    round_ = LabelingRound.objects.get()
    assert response.url == reverse("console:round", args=[round_.pk])
    assert round_.state == "generating" and (round_.k, round_.overlap) == (3, 2)
    assert sorted(round_.prompts.values_list("text", flat=True)) == [
        "Question 0",
        "Question 1",
        "Question 2",
    ]
    assert list(round_.labelers.all()) == [labeler]
    run = TrainingRun.objects.get(round=round_)
    assert run.kind == "generate" and run.config["max_new_tokens"] == 16


def test_an_uncertain_round_from_the_console_needs_a_reward_model(admin_client, settings):
    settings.UNCERTAIN_POOL_FACTOR = 2
    register_base_policy("/models/base")
    for i in range(6):
        Prompt.objects.create(text=f"Question {i}")
    form = {"prompts": 2, "k": 2, "overlap": 1, "max_new_tokens": 8, "temperature": 0.7}
    form |= {"seed": 0, "selection": "uncertain"}
    response = admin_client.post(reverse("console:round_new"), form)
    assert "needs a reward model" in response.content.decode()
    assert not LabelingRound.objects.exists()
    RewardModelVersion.objects.create(number=1, artifact_path="/a/rm")
    admin_client.post(reverse("console:round_new"), form)
    round_ = LabelingRound.objects.get()
    assert (round_.selection, round_.scored_by.number, round_.prompts.count()) == (
        "uncertain",
        1,
        4,
    )
    page = admin_client.get(reverse("console:round", args=[round_.pk])).content.decode()
    assert "Where the reward model is least sure" in page and "Chosen once the answers" in page


def test_a_round_for_chosen_labelers_is_not_given_to_others(labeler, other_labeler):
    round_ = make_round(n_prompts=2)
    round_.labelers.set([labeler])
    assert assign_next(other_labeler) is None
    assert assign_next(labeler).round == round_


def test_a_bad_round_form_changes_nothing(admin_client):
    response = admin_client.post(reverse("console:round_new"), {"prompts": 0, "k": 1})
    assert response.status_code == 200 and not LabelingRound.objects.exists()


def test_training_from_the_console_maps_the_hyperparameters(admin_client, ranked_round):
    url = reverse("console:round_train", args=[ranked_round.pk])
    admin_client.post(url, {"method": "grpo", "steps": 3, "kl": 0.2, "reward_epochs": 1})
    ranked_round.refresh_from_db()
    assert ranked_round.state == "training"
    run = TrainingRun.objects.get(round=ranked_round)
    assert run.kind == "reward"
    assert run.config["method"] == "grpo"
    assert run.config["hyperparameters"] == {"steps": 3, "beta": 0.2, "reward": {"epochs": 1}}


def test_training_a_round_twice_is_refused_with_a_message(admin_client, ranked_round):
    url = reverse("console:round_train", args=[ranked_round.pk])
    admin_client.post(url, {"method": "ppo"})
    page = admin_client.post(url, {"method": "ppo"}, follow=True).content.decode()
    assert "only a labeling round can train" in page
    assert TrainingRun.objects.count() == 1


def test_closing_labeling_early_expires_the_open_tasks_only(admin_client, ranked_round, labeler):
    admin_client.post(reverse("console:round_close", args=[ranked_round.pk]))
    states = sorted(Assignment.objects.values_list("state", flat=True))
    assert states == ["expired", "expired", "submitted"]
    assert assign_next(labeler) is None


def test_a_failed_run_shows_its_error_escaped_and_can_be_retried(admin_client, ranked_round):
    admin_client.post(reverse("console:round_train", args=[ranked_round.pk]), {"method": "ppo"})
    run = TrainingRun.objects.get()
    claim_run(run.pk)
    fail_run(run.pk, "Traceback ...\nRuntimeError: <b>CUDA</b> out of memory")
    page = admin_client.get(reverse("console:run", args=[run.pk])).content.decode()
    assert "RuntimeError: &lt;b&gt;CUDA&lt;/b&gt; out of memory" in page
    admin_client.post(reverse("console:run_retry", args=[run.pk]))
    run.refresh_from_db()
    ranked_round.refresh_from_db()
    assert (run.status, ranked_round.state) == ("queued", "training")


def test_a_queued_run_can_be_cancelled_and_then_retried(admin_client, ranked_round):
    admin_client.post(reverse("console:round_train", args=[ranked_round.pk]), {"method": "ppo"})
    run = TrainingRun.objects.get()
    admin_client.post(reverse("console:run_cancel", args=[run.pk]))
    run.refresh_from_db()
    ranked_round.refresh_from_db()
    assert (run.status, ranked_round.state) == ("cancelled", "failed")
    assert claim_run(run.pk) is None  # a late message does nothing
    admin_client.post(reverse("console:run_retry", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == "queued"


def test_a_running_run_shows_charts_and_time_left(admin_client, ranked_round):
    run = TrainingRun.objects.create(round=ranked_round, kind="ppo")
    claim_run(run.pk)
    steps = [{"step": i, "mean_reward": 0.1 * i, "kl": 0.01 * i, "entropy": 2.0} for i in (1, 2)]
    TrainingRun.objects.filter(pk=run.pk).update(progress=0.25, metrics={"steps": steps})
    page = admin_client.get(reverse("console:run_live", args=[run.pk])).content.decode()
    assert 'data-active="1"' in page
    assert page.count("<svg") == 3  # mean reward, KL, entropy
    assert "left" in page and "25%" in page


def test_rollback_asks_first_then_makes_the_version_current(admin_client, ranked_round):
    v1 = PolicyVersion.objects.get(number=1)
    v2 = PolicyVersion.objects.create(number=2, parent=v1, artifact_path="/m/v2", method="ppo")
    make_current(v2)
    confirm = admin_client.get(reverse("console:current", args=[v1.pk]))
    assert b"Make v1 the current policy?" in confirm.content
    v1.refresh_from_db()
    assert not v1.is_current  # a GET changes nothing
    admin_client.post(reverse("console:current", args=[v1.pk]))
    v1.refresh_from_db()
    assert v1.is_current


def test_comparing_two_versions_queues_a_worker_task(admin_client, ranked_round):
    v1 = PolicyVersion.objects.get(number=1)
    v2 = PolicyVersion.objects.create(number=2, parent=v1, artifact_path="/m/v2", method="ppo")
    form = {"first": v1.pk, "second": v2.pk, "prompts": 8}
    response = admin_client.post(reverse("console:compare"), form)
    run = TrainingRun.objects.get(kind="compare")
    assert response.url == reverse("console:run", args=[run.pk])
    assert run.round is None and run.config == {"versions": [v1.pk, v2.pk], "prompts": 8}


def test_comparison_samples_are_shown_side_by_side_escaped(admin_client, db):
    metrics = {
        "versions": [1, 2],
        "samples": [{"prompt": "Hi", "first": "<script>x()</script>", "second": "Hello!"}],
        "win_rate": None,
        "held_out": True,
    }
    run = TrainingRun.objects.create(kind="compare", status="succeeded", metrics=metrics)
    page = admin_client.get(reverse("console:run", args=[run.pk])).content.decode()
    assert "&lt;script&gt;x()&lt;/script&gt;" in page and "<script>x()" not in page
    assert "Hello!" in page


def test_importing_prompts_from_the_console(admin_client, db, tmp_path):
    path = tmp_path / "new.jsonl"
    path.write_text('{"prompt": "First <b>question</b>"}\n{"prompt": "Second"}\n')
    with path.open("rb") as f:
        admin_client.post(reverse("console:import"), {"kind": "prompts", "file": f})
    assert sorted(Prompt.objects.values_list("text", flat=True)) == [
        "First <b>question</b>",
        "Second",
    ]


def test_a_bad_import_names_its_lines_and_imports_nothing(admin_client, db, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "Fine"}\n{"text": ""}\nnot json\n')
    with path.open("rb") as f:
        page = admin_client.post(reverse("console:import"), {"kind": "prompts", "file": f})
    body = page.content.decode()
    assert page.status_code == 200 and "line 2" in body and "line 3" in body
    assert not Prompt.objects.exists()


def test_exports_stream_the_rounds_comparisons_and_rankings(admin_client, ranked_round):
    trl = admin_client.get(reverse("console:round_export", args=[ranked_round.pk, "trl"]))
    rows = [json.loads(line) for line in b"".join(trl.streaming_content).splitlines()]
    assert len(rows) == 6 and set(rows[0]) == {"prompt", "chosen", "rejected"}
    assert "attachment" in trl["Content-Disposition"]
    raw = admin_client.get(reverse("console:round_export", args=[ranked_round.pk, "rankings"]))
    rankings = [json.loads(line) for line in b"".join(raw.streaming_content).splitlines()]
    assert len(rankings) == 1
    unknown = admin_client.get(reverse("console:round_export", args=[ranked_round.pk, "xml"]))
    assert unknown.status_code == 404


def test_quality_pages_show_the_labelers(admin_client, ranked_round):
    page = admin_client.get(reverse("console:round", args=[ranked_round.pk])).content.decode()
    assert "alice" in page and "No prompt was ranked by two labelers" in page
    assert "alice" in admin_client.get(reverse("console:quality")).content.decode()


def test_the_quality_page_counts_each_labeler_s_ties_and_all_bad(admin_client, labeler):
    round_ = make_round(n_prompts=3)
    for submission in (
        RankingSubmission(ranking=["A", ["B", "C"], "D"]),
        RankingSubmission(all_bad=True, demonstration="Better."),
        RankingSubmission(all_bad=True, demonstration="Better still."),
    ):
        submit_ranking(labeler, assign_next(labeler).pk, submission)
    stats = admin_client.get(reverse("console:round", args=[round_.pk])).context["quality"]
    (alice,) = stats["labelers"]
    assert (alice["done"], alice["with_ties"], alice["all_bad"]) == (3, 1, 2)
    page = admin_client.get(reverse("console:quality")).content.decode()
    assert "<th>With ties</th><th>All bad</th>" in page
    assert "<td>1</td><td>2</td></tr>" in page


def test_gold_from_the_console_marks_rankings_and_adds_gold_tasks(admin_client, ranked_round):
    ranking = Ranking.objects.get()
    url = reverse("console:round_gold", args=[ranked_round.pk])
    page = admin_client.post(url, {"ranking": ["x"]}, follow=True).content.decode()
    assert "ranking ids: whole numbers only" in page
    page = admin_client.post(url, {"ranking": [ranking.pk + 99]}, follow=True).content.decode()
    assert f"that order answers: {ranking.pk + 99}" in page
    assert not Ranking.objects.get().gold
    page = admin_client.post(url, {"ranking": [ranking.pk], "gold": "1"}, follow=True)
    assert "1 rankings marked gold." in page.content.decode()
    assert "<th>Trust</th>" in page.content.decode()
    assert Ranking.objects.get().gold

    other = make_round(n_prompts=1, prefix="Next")
    tasks = reverse("console:round_gold_tasks", args=[other.pk])
    page = admin_client.get(reverse("console:round", args=[other.pk])).content.decode()
    assert "1 gold prompts not in this round yet" in page
    before = db_snapshot()
    page = admin_client.post(tasks, {"count": "lots"}, follow=True).content.decode()
    assert "the number of gold tasks: whole numbers only" in page
    assert db_snapshot() == before
    page = admin_client.post(tasks, {"count": "3"}, follow=True).content.decode()
    assert f"1 gold tasks added to round {other.number}." in page
    assert Assignment.objects.filter(round=other).count() == 2
