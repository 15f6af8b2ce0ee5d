"""The task page and its plain-form posts: the same rules as the API, without JavaScript."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from labelapp.models import Assignment, Comparison, Completion, Demonstration, Ranking
from labelapp.services.assignment import assign_next, skip_assignment
from tests.conftest import db_snapshot, make_round


@pytest.fixture
def browser(labeler):
    client = Client()
    client.force_login(labeler)
    return client


@pytest.fixture
def shown(browser, labeling_round):
    """The assignment the task page shows."""
    response = browser.get("/label/")
    assert response.status_code == 200
    return response.context["assignment"]


def form_data(ranking="CADB", **extra):
    data = {f"rank_{i}": label for i, label in enumerate(ranking, start=1)}
    return {**data, **extra}


def test_login_is_required_and_labelers_land_on_their_task(labeler, labeling_round):
    client = Client()
    response = client.get("/label/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": "correct horse battery staple"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/label/"
    assert b"Your ranking, best to worst" in response.content


def test_the_page_shows_the_prompt_and_four_answers_a_to_d(browser, shown):
    page = browser.get("/label/").content.decode()
    assert shown.prompt.text in page
    for label, cid in zip("ABCD", shown.order, strict=True):
        assert f'id="card-{label}"' in page
        assert Completion.objects.get(pk=cid).text in page
    assert 'Done this round: <strong id="done-count">0</strong>' in page


def test_a_plain_form_submit_stores_the_ranking_and_shows_the_next_task(browser, shown):
    response = browser.post(
        f"/label/assignments/{shown.pk}/rank",
        form_data("CADB", flags_B=["hallucination"], quality="6", demonstration="Better."),
        follow=True,
    )
    ranking = Ranking.objects.get()
    assert ranking.labels == list("CADB") and ranking.quality == 6
    assert ranking.flags == {str(shown.order[1]): ["hallucination"]}
    assert ranking.time_spent_ms is not None
    assert Demonstration.objects.get().text == "Better."
    assert b"Ranking saved." in response.content
    next_one = response.context["assignment"]
    assert next_one.pk != shown.pk
    assert 'id="done-count">1<' in response.content.decode()


NO_BETTER_ANSWER = "all bad needs a better answer"
BAD_FORMS = [
    ("missing label", form_data("CAD"), 422, "missing B"),
    ("repeated label", form_data("CADD"), 422, "more than once"),
    ("unknown label", form_data("CADE"), 422, "valid choice"),
    ("quality 0", form_data(quality="0"), 422, "valid choice"),
    ("quality 8", form_data(quality="8"), 422, "valid choice"),
    ("quality x", form_data(quality="x"), 422, "valid choice"),
    ("negative time", form_data(time_spent_ms="-5"), 422, "greater than or equal to 0"),
    ("unknown flag", form_data(flags_A=["rude"]), 422, "valid choice"),
    ("demonstration too long", form_data(demonstration="x" * 10_001), 422, "at most 10000"),
    ("everything tied", form_data(tie_2="on", tie_3="on", tie_4="on"), 422, "everything tied"),
    ("all bad, no better answer", form_data(all_bad="1"), 422, NO_BETTER_ANSWER),
    ("all bad, blank", form_data("", all_bad="1", demonstration=" \n "), 422, NO_BETTER_ANSWER),
]


@pytest.mark.parametrize(("case", "data", "status", "message"), BAD_FORMS, ids=lambda x: x)
def test_a_bad_form_is_shown_again_with_the_error_and_changes_nothing(
    browser, shown, case, data, status, message
):
    before = db_snapshot()
    response = browser.post(f"/label/assignments/{shown.pk}/rank", data)
    assert response.status_code == status
    assert message in response.content.decode()
    assert response.context["assignment"].pk == shown.pk  # same task, the labeler's input kept
    assert db_snapshot() == before


def test_the_page_has_a_tie_box_below_the_best_and_an_all_bad_button(browser, shown):
    page = browser.get("/label/").content.decode()
    assert 'name="tie_1"' not in page  # nothing is above the best
    for i in (2, 3, 4):
        assert f'name="tie_{i}"' in page
    assert "tied with the one above" in page
    assert 'name="all_bad" value="1"' in page and 'data-all-bad=""' in page


def test_tie_boxes_join_a_position_to_the_group_above(browser, shown):
    label_of = dict(zip("ABCD", shown.order, strict=True))
    response = browser.post(
        f"/label/assignments/{shown.pk}/rank", form_data("CADB", tie_2="on"), follow=True
    )
    ranking = Ranking.objects.get()
    assert ranking.tied == [[label_of["A"], label_of["C"]]]  # the service sorts a group
    assert ranking.labels == list("ACDB") and not ranking.all_bad
    assert Comparison.objects.count() == 5  # C(4,2) less the tied pair
    assert b"Ranking saved." in response.content


def test_two_tie_boxes_in_a_row_make_one_group_of_three(browser, shown):
    label_of = dict(zip("ABCD", shown.order, strict=True))
    browser.post(f"/label/assignments/{shown.pk}/rank", form_data("CADB", tie_3="on", tie_4="on"))
    ranking = Ranking.objects.get()
    assert ranking.tied == [[label_of["A"], label_of["B"], label_of["D"]]]
    assert Comparison.objects.count() == 3  # C above each of the three


def test_a_posted_tie_1_is_ignored(browser, shown):
    browser.post(f"/label/assignments/{shown.pk}/rank", form_data("CADB", tie_1="on"))
    ranking = Ranking.objects.get()
    assert ranking.labels == list("CADB") and ranking.tied == []
    assert Comparison.objects.count() == 6


def test_the_all_bad_button_stores_all_bad_with_the_better_answer_and_no_pairs(browser, shown):
    response = browser.post(
        f"/label/assignments/{shown.pk}/rank",
        form_data("CA", all_bad="1", demonstration="A better answer."),  # the selects are ignored
        follow=True,
    )
    ranking = Ranking.objects.get()
    assert ranking.all_bad and ranking.order == [] and ranking.tied == []
    assert Comparison.objects.count() == 0
    assert Demonstration.objects.get().text == "A better answer."
    assert b"All bad: your better answer saved." in response.content
    assert response.context["assignment"].pk != shown.pk


def test_all_bad_without_a_better_answer_keeps_the_page_as_it_was(browser, shown):
    before = db_snapshot()
    response = browser.post(
        f"/label/assignments/{shown.pk}/rank",
        form_data("CA", tie_2="on", all_bad="1", quality="3", flags_B=["harmful"]),
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert 'role="alert" id="error">Not saved: all bad needs a better answer' in page
    assert 'data-all-bad="1"' in page  # the script comes back in all-bad mode
    assert '<details class="demonstration" open>' in page
    assert re.search(r'<input type="checkbox" name="tie_2"[^>]* checked>', page)
    assert re.search(r'name="quality" value="3"[^>]* checked>', page)
    assert re.search(r'name="flags_B" value="harmful"[^>]* checked>', page)
    assert db_snapshot() == before


def test_a_tie_in_a_two_answer_task_is_refused(browser, db):
    make_round(n_prompts=1, k=2)
    shown = browser.get("/label/").context["assignment"]
    before = db_snapshot()
    response = browser.post(f"/label/assignments/{shown.pk}/rank", form_data("BA", tie_2="on"))
    assert response.status_code == 422
    assert "everything tied compares nothing" in response.content.decode()
    assert db_snapshot() == before


def test_someone_elses_assignment_is_404(browser, shown, other_labeler):
    theirs = assign_next(other_labeler)
    before = db_snapshot()
    response = browser.post(f"/label/assignments/{theirs.pk}/rank", form_data())
    assert response.status_code == 404
    assert browser.post(f"/label/assignments/{theirs.pk}/skip", {"reason": "x"}).status_code == 404
    assert db_snapshot() == before


def test_an_expired_assignment_is_410(browser, shown):
    Assignment.objects.filter(pk=shown.pk).update(reserved_until=timezone.now() - timedelta(1))
    before = db_snapshot()
    response = browser.post(f"/label/assignments/{shown.pk}/rank", form_data())
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert db_snapshot() == before


def test_a_double_submit_stores_one_ranking_and_a_different_one_is_409(browser, shown):
    url = f"/label/assignments/{shown.pk}/rank"
    assert browser.post(url, form_data("CADB")).status_code == 302
    assert browser.post(url, form_data("CADB")).status_code == 302
    assert Ranking.objects.count() == 1
    before = db_snapshot()
    response = browser.post(url, form_data("ABCD"))
    assert response.status_code == 409
    assert db_snapshot() == before


def test_a_skipped_assignment_cannot_be_ranked(browser, shown, labeler):
    skip_assignment(labeler, shown.pk, "unclear")
    before = db_snapshot()
    response = browser.post(f"/label/assignments/{shown.pk}/rank", form_data())
    assert response.status_code == 409
    assert db_snapshot() == before


def test_skip_with_a_reason_moves_on_and_without_one_is_refused(browser, shown):
    url = f"/label/assignments/{shown.pk}/skip"
    before = db_snapshot()
    assert browser.post(url, {"reason": ""}).status_code == 422
    assert db_snapshot() == before
    response = browser.post(url, {"reason": "not my language"})
    assert response.status_code == 302
    shown.refresh_from_db()
    assert shown.state == Assignment.State.SKIPPED


def test_a_post_without_csrf_token_is_403(labeler, labeling_round):
    client = Client(enforce_csrf_checks=True)
    client.force_login(labeler)
    shown = client.get("/label/").context["assignment"]
    before = db_snapshot()
    assert client.post(f"/label/assignments/{shown.pk}/rank", form_data()).status_code == 403
    assert client.post(f"/label/assignments/{shown.pk}/skip", {"reason": "x"}).status_code == 403
    assert db_snapshot() == before


def test_not_logged_in_posts_go_to_login_and_change_nothing(labeling_round, labeler):
    shown = assign_next(labeler)
    before = db_snapshot()
    response = Client().post(f"/label/assignments/{shown.pk}/rank", form_data())
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert db_snapshot() == before


def test_html_in_prompts_and_answers_is_shown_as_text(browser, db):
    round_ = make_round(n_prompts=1, prefix="<script>alert('p')</script>")
    Completion.objects.filter(round=round_).update(text="<img src=x onerror=alert(1)> <b>hi</b>")
    page = browser.get("/label/").content.decode()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;p&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt; &lt;b&gt;hi&lt;/b&gt;" in page


def test_no_work_page(browser, db):
    response = browser.get("/label/")
    assert response.status_code == 200
    assert b"Nothing to rank right now" in response.content
