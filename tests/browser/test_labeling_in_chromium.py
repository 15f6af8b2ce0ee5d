"""A labeler in a real browser: log in, rank by keyboard, rank by drag and drop."""

import pytest

from labelapp.models import Completion, Ranking
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
