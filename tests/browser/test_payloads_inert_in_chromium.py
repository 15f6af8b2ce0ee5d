"""HTML/JS payloads in prompts, completions, flags, demonstrations and model answers are shown
as inert text in a real Chromium: on the labeler's page, on the console and in Django's admin.

Inert means three things, each checked: no dialog opens (alert/confirm/prompt), no element or
script from a payload exists in the DOM (so the CSP, which would also block them, is not what
saves us), and the payload is visible to the reader literally, character for character.
"""

import pytest
from django.contrib.auth.models import User

from labelapp.access import ADMINS
from labelapp.models import Completion, Demonstration, Prompt, Ranking, TrainingRun
from labelapp.services.assignment import assign_next
from labelapp.services.ranking import RankingSubmission, submit_ranking
from labelapp.services.rounds import create_round, start_labeling
from tests.conftest import PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE_NAME = "<img src=x onerror=alert('username')>"
# Elements a payload would have created, and scripts carrying one.
INJECTED = """() => [
    ...document.querySelectorAll('[onerror], [onload], img[src="x"], iframe, object'),
    ...[...document.scripts].filter(s => s.textContent.includes('alert(')),
].length"""
# Installed before any page script: records what the CSP had to block.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
    e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def payload(where: str) -> str:
    """A text that is markup, script, an attribute break-out, a closing tag and template syntax."""
    return (
        f"[{where}] <script>alert('{where}')</script>"
        f"<img src=x onerror=\"alert('{where}')\">"
        f"\"'></textarea></pre><svg onload=alert('{where}')> {{{{ 7|add:1 }}}} &amp; &lt;b&gt;"
    )


class Watched:
    """A browser page whose dialogs and CSP violations are recorded."""

    def __init__(self, page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))

    def assert_inert(self, *texts: str) -> None:
        """No dialog, nothing injected, nothing blocked, and every text shown literally."""
        page = self.page
        assert self.dialogs == [], f"a payload ran on {page.url}: {self.dialogs}"
        assert page.evaluate(INJECTED) == 0, f"a payload became markup on {page.url}"
        assert page.evaluate("window.__cspViolations") == [], page.url
        shown = page.locator("body").inner_text()
        for text in texts:
            assert text in shown, f"not shown literally on {page.url}: {text!r}"


def open_watched(chromium, base_url: str, username: str) -> Watched:
    """A fresh browser context, logged in through the login form."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(10_000)
    watched = Watched(page)
    page.goto(base_url + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return watched


@pytest.fixture
def hostile_round():
    """A round of one hostile prompt with four hostile answers, ready to label."""
    prompt = Prompt.objects.create(text=payload("prompt"))
    round_ = create_round([prompt], k=4, overlap=2)
    Completion.objects.bulk_create(
        Completion(prompt=prompt, round=round_, text=payload(f"answer {j}"), source="test")
        for j in range(4)
    )
    start_labeling(round_)
    return round_


@pytest.fixture
def browsers(chromium, live_server):
    contexts = []

    def open_as(username: str) -> Watched:
        watched = open_watched(chromium, live_server.url, username)
        contexts.append(watched.page.context)
        return watched

    yield open_as
    for context in contexts:
        context.close()


def test_payloads_are_inert_text_for_the_labeler_and_what_they_write_is_stored_verbatim(
    browsers, live_server, hostile_round
):
    make_user("alice", "labelers")
    labeler = browsers("alice")
    page = labeler.page
    page.goto(live_server.url + "/label/")
    answers = [payload(f"answer {j}") for j in range(4)]
    labeler.assert_inert(payload("prompt"), *answers)

    for key in "dcba":
        page.keyboard.press(key)
    page.click("#card-B details.flags summary")
    page.check("#card-B input[value=harmful]")
    page.click("details.demonstration summary")
    page.fill("#id_demonstration", payload("demonstration"))
    page.click("#submit")
    page.wait_for_selector(".messages")
    labeler.assert_inert("Ranking saved.")

    ranking = Ranking.objects.get()
    flagged = Completion.objects.get(pk=int(next(iter(ranking.flags))))
    assert ranking.flags == {str(flagged.pk): ["harmful"]} and flagged.text in answers
    assert Demonstration.objects.get().text == payload("demonstration")


def test_payloads_are_inert_text_on_the_console_and_in_django_admin(
    browsers, live_server, hostile_round
):
    # A labeler whose name is a payload flags an answer and writes a demonstration.
    ranker = User.objects.create_user(HOSTILE_NAME, password=PASSWORD)
    ranker.groups.add(make_user("alice", "labelers").groups.get())
    assignment = assign_next(ranker)
    flagged_id = assignment.order[1]
    submission = RankingSubmission(
        list("ABCD"), flags={"B": ["harmful"]}, demonstration=payload("demonstration")
    )
    submit_ranking(ranker, assignment.pk, submission)
    flagged_text = Completion.objects.get(pk=flagged_id).text
    # A comparison of two versions, still running (so its live part is re-fetched by script).
    compare = TrainingRun.objects.create(
        round=hostile_round,
        kind="compare",
        status="running",
        progress=0.5,
        error=payload("error"),
        metrics={
            "versions": [1, 2],
            "samples": [
                {
                    "prompt": payload("compared prompt"),
                    "first": payload("v1"),
                    "second": payload("v2"),
                }
            ],
            "win_rate": None,
            "note": payload("metric"),
        },
    )
    admin = make_user("root", ADMINS)
    User.objects.filter(pk=admin.pk).update(is_staff=True, is_superuser=True)
    console = browsers("root")
    page = console.page
    base = live_server.url

    page.goto(f"{base}/console/rounds/{hostile_round.pk}/")
    console.assert_inert(flagged_text, payload("prompt")[:60], HOSTILE_NAME)

    page.goto(f"{base}/console/quality")
    console.assert_inert(HOSTILE_NAME)

    page.goto(f"{base}/console/runs/{compare.pk}/")
    compared = [payload(w) for w in ("compared prompt", "v1", "v2", "error")]
    metrics = page.locator("#run-live details")  # folded while the run is active
    for _ in range(2):
        console.assert_inert(*compared)
        assert payload("metric") in metrics.text_content()
        # The live part is replaced every 2 s by the server's fragment (through a <template>).
        with page.expect_response(lambda response: response.url.endswith("/live")):
            pass
        page.wait_for_timeout(200)

    page.goto(f"{base}/admin/labelapp/prompt/")
    console.assert_inert(payload("prompt")[:60])
    demonstration = Demonstration.objects.get()
    page.goto(f"{base}/admin/labelapp/demonstration/{demonstration.pk}/change/")
    console.assert_inert()
    assert page.input_value("#id_text") == payload("demonstration")
