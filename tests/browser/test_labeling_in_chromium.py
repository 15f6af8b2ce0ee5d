"""A labeler in a real browser: log in, rank by keyboard and by drag and drop, tie answers,
mark them all bad with a better answer."""

import pytest

from labelapp.models import Assignment, Comparison, Completion, Demonstration, Ranking
from tests.conftest import PASSWORD, make_round, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = "<img src=x onerror=alert('xss')><script>alert('xss')</script>"


def log_in(page, live_server, username: str) -> list[str]:
    """A new labeler signed in on the task page; the list collects any dialog a script opens."""
    make_user(username, "labelers")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(live_server.url + "/label/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/label/")
    return dialogs


@pytest.fixture
def logged_in(page, live_server):
    round_ = make_round(n_prompts=3)
    Completion.objects.filter(round=round_).update(text=HOSTILE + " answer")
    dialogs = log_in(page, live_server, "alice")
    yield page
    assert dialogs == [], "a script from a completion ran"


def ranked_labels(page):
    return page.locator("#order li.ranked strong").all_inner_texts()


def test_rank_by_keyboard_submit_and_see_the_next_task(logged_in, tmp_path):
    page = logged_in
    first = page.get_attribute("#task", "data-assignment")
    assert page.locator(".card").count() == 4
    assert HOSTILE in page.inner_text("#card-A .text")  # shown as text, not run
    for key in "cadb":
        page.keyboard.press(key)
    page.keyboard.press("Backspace")
    page.keyboard.press("b")
    assert ranked_labels(page) == ["C", "A", "D", "B"]
    assert page.inner_text("[data-badge=C]") == "#1"
    page.screenshot(path=str(tmp_path / "keyboard-ranked.png"), full_page=True)
    page.keyboard.press("Enter")
    page.wait_for_selector(".messages")
    assert "Ranking saved." in page.inner_text(".messages")
    assert page.get_attribute("#task", "data-assignment") != first
    assert page.inner_text("#done-count") == "1"
    ranking = Ranking.objects.get()
    assert ranking.labels == ["C", "A", "D", "B"]
    assert ranking.time_spent_ms > 0
    page.screenshot(path=str(tmp_path / "next-task.png"), full_page=True)
    assert (tmp_path / "next-task.png").stat().st_size > 10_000


def test_rank_by_drag_and_drop(logged_in, tmp_path):
    page = logged_in
    for label in "BADC":
        page.drag_and_drop(f"#card-{label}", "#order li.slot >> nth=0")
    assert ranked_labels(page) == ["B", "A", "D", "C"]
    page.drag_and_drop("#order li[data-label=C]", "#order li >> nth=0")  # C to the top
    assert ranked_labels(page) == ["C", "B", "A", "D"]
    page.screenshot(path=str(tmp_path / "dragged.png"), full_page=True)
    page.click("#submit")
    page.wait_for_selector(".messages")
    assert Ranking.objects.get().labels == ["C", "B", "A", "D"]


def test_a_half_done_ranking_survives_a_reload(logged_in):
    page = logged_in
    assert page.is_disabled("#submit")
    page.keyboard.press("b")
    page.keyboard.press("a")
    page.reload()
    assert ranked_labels(page) == ["B", "A"]
    page.keyboard.press("Enter")  # incomplete: nothing is sent
    assert Ranking.objects.count() == 0


def tied_rows(page):
    """The labels of each tied row of the ranking."""
    rows = page.locator("#order li.tied")
    return [rows.nth(i).locator("strong").all_inner_texts() for i in range(rows.count())]


def shown_ids(page) -> dict:
    """Label -> completion id of the assignment on the page."""
    assignment = Assignment.objects.get(pk=page.get_attribute("#task", "data-assignment"))
    return dict(zip(assignment.labels(), assignment.order, strict=True))


def test_equals_ties_the_next_letter_to_the_rank_above(logged_in, tmp_path):
    page = logged_in
    ids = shown_ids(page)
    for key in "c=a":
        page.keyboard.press(key)
    assert tied_rows(page) == [["C", "A"]]
    page.keyboard.press("Backspace")  # A leaves the group
    assert ranked_labels(page) == ["C"] and tied_rows(page) == []
    for key in "=adb":
        page.keyboard.press(key)
    assert ranked_labels(page) == ["C", "A", "D", "B"]
    assert tied_rows(page) == [["C", "A"]]
    assert page.inner_text("#order li.tied .rank-no") == "1."
    badges = {label: page.inner_text(f"[data-badge={label}]") for label in "ABCD"}
    assert badges == {"C": "#1", "A": "#1", "D": "#2", "B": "#3"}
    page.screenshot(path=str(tmp_path / "tied.png"), full_page=True)
    page.keyboard.press("Enter")
    page.wait_for_selector(".messages")
    ranking = Ranking.objects.get()
    assert ranking.labels == ["A", "C", "D", "B"]  # a group is stored sorted
    assert ranking.tied == [[ids["A"], ids["C"]]]
    assert Comparison.objects.filter(ranking=ranking).count() == 5


def test_everything_tied_cannot_be_submitted(logged_in):
    page = logged_in
    for key in "c=a=d=b":
        page.keyboard.press(key)
    assert tied_rows(page) == [["C", "A", "D", "B"]]
    assert "Everything is tied" in page.inner_text("#order-hint")
    assert page.is_disabled("#submit")
    page.keyboard.press("Enter")
    assert Ranking.objects.count() == 0


def test_tie_by_dropping_on_a_rows_tie_end(logged_in):
    page = logged_in
    ids = shown_ids(page)
    for label in "BADC":
        page.drag_and_drop(f"#card-{label}", "#order li.slot >> nth=0")
    page.drag_and_drop("#order li[data-label=C]", "#order li[data-label=A] .tie-zone")
    assert tied_rows(page) == [["A", "C"]]
    assert ranked_labels(page) == ["B", "A", "C", "D"]
    page.drag_and_drop("#card-D", "#order li.tied .tie-zone")
    assert tied_rows(page) == [["A", "C", "D"]]
    page.drag_and_drop("#order .member[data-label=D]", "#order li >> nth=0")  # out, to the top
    assert ranked_labels(page) == ["D", "B", "A", "C"] and tied_rows(page) == [["A", "C"]]
    page.click("#submit")
    page.wait_for_selector(".messages")
    ranking = Ranking.objects.get()
    assert ranking.labels == ["D", "B", "A", "C"]
    assert ranking.tied == [[ids["A"], ids["C"]]]


def test_all_bad_by_keyboard_with_a_better_answer(logged_in, tmp_path):
    page = logged_in
    page.keyboard.press("x")
    assert page.is_visible("#all-bad-banner")
    page.keyboard.press("Escape")  # back to ranking
    assert page.is_hidden("#all-bad-banner")
    page.keyboard.press("x")
    assert page.evaluate("document.activeElement.id") == "id_demonstration"
    page.keyboard.type("A better answer, by a box of x and b.")
    assert ranked_labels(page) == []  # the letters went into the text
    page.screenshot(path=str(tmp_path / "all-bad.png"), full_page=True)
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(".messages")
    assert "All bad: your better answer saved." in page.inner_text(".messages")
    ranking = Ranking.objects.get()
    assert ranking.all_bad and ranking.order == [] and ranking.tied == []
    assert Comparison.objects.count() == 0
    demonstration = Demonstration.objects.get()
    assert demonstration.text == "A better answer, by a box of x and b."
    assert demonstration.assignment_id == ranking.assignment_id


def test_all_bad_without_a_better_answer_shows_why_and_stores_nothing(logged_in):
    page = logged_in
    first = page.get_attribute("#task", "data-assignment")
    for key in "c=a":
        page.keyboard.press(key)
    page.keyboard.press("x")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#error")
    assert "Not saved: all bad needs a better answer" in page.inner_text("#error")
    assert Ranking.objects.count() == 0 and Demonstration.objects.count() == 0
    assert page.get_attribute("#task", "data-assignment") == first
    assert page.is_visible("#all-bad-banner")  # still in all-bad mode, the box focused
    assert page.evaluate("document.activeElement.id") == "id_demonstration"
    assert ranked_labels(page) == ["C", "A"] and tied_rows(page) == [["C", "A"]]
    page.keyboard.type("Here is a better one.")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(".messages")
    assert Ranking.objects.get().all_bad
    assert Demonstration.objects.get().text == "Here is a better one."


def test_ties_survive_a_reload(logged_in):
    page = logged_in
    ids = shown_ids(page)
    for key in "d=b":
        page.keyboard.press(key)
    page.reload()
    assert ranked_labels(page) == ["D", "B"] and tied_rows(page) == [["D", "B"]]
    for key in "ca":
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_selector(".messages")
    assert Ranking.objects.get().tied == [[ids["B"], ids["D"]]]


def test_a_dialogue_is_shown_as_turns_and_ranked_by_keyboard(page, live_server):
    from labelapp.models import Prompt
    from labelapp.services.rounds import create_round, start_labeling
    from rlhf_worker.training import dialogue

    turns = [
        {"role": "user", "content": "My basil keeps wilting. " + HOSTILE},
        {"role": "assistant", "content": "How often do you water it? " + "Details. " * 100},
        {"role": "user", "content": "Every day, in a small pot."},
    ]
    prompt = Prompt.objects.create(text=dialogue.render(turns))
    round_ = create_round([prompt], k=2)
    Completion.objects.bulk_create(
        Completion(prompt=prompt, round=round_, text=f"answer {i}", source="test") for i in range(2)
    )
    start_labeling(round_)
    dialogs = log_in(page, live_server, "bob")
    assert page.locator(".dialogue .turn").count() == 3
    assert page.locator(".dialogue .turn.user").count() == 2
    assert HOSTILE in page.inner_text(".dialogue .turn >> nth=0")  # text, not markup
    assert page.locator(".dialogue details").count() == 1  # the long turn starts folded
    assert "Every day" in page.inner_text(".dialogue .turn.current")
    page.keyboard.press("b")
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    page.wait_for_selector(".messages")
    assert Ranking.objects.get().labels == ["B", "A"]
    assert dialogs == []
