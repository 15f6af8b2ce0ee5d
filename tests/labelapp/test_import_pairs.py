import json
import time
from pathlib import Path

import pytest

from labelapp.models import (
    Assignment,
    Comparison,
    Completion,
    LabelingRound,
    PolicyVersion,
    Prompt,
    Ranking,
)
from labelapp.services.assignment import assign_next
from labelapp.services.errors import InvalidInput
from labelapp.services.exports import (
    comparisons_as_trl_jsonl,
    training_comparisons,
    training_rankings,
)
from labelapp.services.import_files import InvalidRows
from labelapp.services.imports import import_pairs
from labelapp.services.ranking import RankingSubmission, submit_ranking
from rlhf_worker.training.rankings import RankedExample
from tests.conftest import db_snapshot, make_round

HH_SAMPLE = (
    Path(__file__).resolve().parents[2] / "labelapp" / "data" / "hh_rlhf_harmless_sample.jsonl"
)

PAIRS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": "Name a color.", "chosen": "Blue.", "rejected": "<b>Loud</b>"},
    {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."},
]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def unchanged():
    return (
        db_snapshot(),
        Prompt.objects.count(),
        Completion.objects.count(),
        LabelingRound.objects.count(),
    )


def test_pairs_become_a_round_of_submitted_two_way_rankings(admin_user):
    result = import_pairs("pairs.jsonl", jsonl(PAIRS), user=admin_user, source="demo")
    round_ = result.round
    assert (result.created, result.prompts_created, result.already_present) == (3, 3, 0)
    assert (round_.state, round_.k, round_.overlap, round_.prompts.count()) == ("labeling", 2, 1, 3)
    assert round_.config == {
        "imported_from": "pairs.jsonl",
        "kind": "imported_pairs",
        "source": "demo",
    }
    for pair in PAIRS:
        assignment = Assignment.objects.get(round=round_, prompt__text=pair["prompt"])
        assert (assignment.state, assignment.labeler) == ("submitted", admin_user)
        ranking = Ranking.objects.get(assignment=assignment)
        chosen, rejected = (Completion.objects.get(pk=pk) for pk in ranking.order)
        assert (chosen.text, rejected.text) == (pair["chosen"], pair["rejected"])
        assert assignment.order == ranking.order and ranking.labels == ["A", "B"]
        assert {chosen.source, rejected.source} == {"import:demo"}
        assert chosen.policy_version is None
        comparison = Comparison.objects.get(ranking=ranking)
        assert (comparison.chosen_id, comparison.rejected_id) == (chosen.pk, rejected.pk)


def test_the_trl_export_of_an_imported_round_gives_back_exactly_the_pairs(admin_user):
    make_round()  # another round's comparisons must not leak in
    round_ = import_pairs("pairs.jsonl", jsonl(PAIRS), user=admin_user).round
    exported = [json.loads(line) for line in comparisons_as_trl_jsonl(round_)]
    assert exported == PAIRS


def test_only_the_first_pair_of_a_prompt_is_imported_and_the_rest_reported(admin_user):
    rows = [*PAIRS, {"prompt": "What is 2+2?", "chosen": "Four", "rejected": "Fish"}]
    result = import_pairs("pairs.jsonl", jsonl(rows), user=admin_user)
    assert (result.created, result.duplicate_lines) == (3, [4])
    exported = [json.loads(line) for line in comparisons_as_trl_jsonl(result.round)]
    assert exported == PAIRS


def test_importing_the_same_pairs_again_creates_nothing(admin_user):
    import_pairs("pairs.jsonl", jsonl(PAIRS), user=admin_user)
    before = unchanged()
    again = import_pairs("copy.jsonl", jsonl(PAIRS), user=admin_user)
    assert (again.round, again.created, again.already_present) == (None, 0, 3)
    assert unchanged() == before

    # Only the new pair goes into a new round.
    extra = {"prompt": "What is 2+2?", "chosen": "Four", "rejected": "Fish"}
    more = import_pairs("more.jsonl", jsonl([*PAIRS, extra]), user=admin_user)
    assert (more.created, more.already_present, more.prompts_created) == (1, 3, 0)
    assert more.duplicate_lines == []  # its prompt's first pair was in the earlier round


def test_stored_prompts_are_reused(admin_user):
    stored = Prompt.objects.create(text="Say hi.", source="earlier", held_out=True)
    result = import_pairs("pairs.jsonl", jsonl(PAIRS), user=admin_user)
    assert result.prompts_created == 2 and Prompt.objects.count() == 3
    assert result.round.prompts.filter(pk=stored.pk).exists()
    stored.refresh_from_db()
    assert (stored.source, stored.held_out) == ("earlier", True)


def test_bad_pairs_are_named_by_line_and_nothing_is_written(admin_user):
    make_round()
    before = unchanged()
    rows = [
        PAIRS[0],
        {"prompt": "Same?", "chosen": "yes", "rejected": "yes"},
        {"prompt": "Missing", "chosen": "only one"},
        {"prompt": "", "chosen": "a", "rejected": "b"},
    ]
    with pytest.raises(InvalidRows) as refused:
        import_pairs("pairs.jsonl", jsonl(rows), user=admin_user)
    assert refused.value.detail.splitlines()[1:] == [
        "line 2: chosen and rejected are the same text",
        "line 3: rejected is missing",
        "line 4: prompt is empty",
    ]
    assert unchanged() == before


def test_skip_invalid_imports_the_valid_pairs(admin_user):
    rows = [PAIRS[0], {"prompt": "Same?", "chosen": "yes", "rejected": "yes"}, PAIRS[1]]
    result = import_pairs("pairs.jsonl", jsonl(rows), user=admin_user, skip_invalid=True)
    assert (result.created, result.skipped_invalid) == (2, 1)
    assert [str(e) for e in result.errors] == ["line 2: chosen and rejected are the same text"]


def test_pairs_can_come_from_csv(admin_user):
    data = b'prompt,chosen,rejected\n"Why, though?",Because.,No reason.\n'
    result = import_pairs("pairs.csv", data, user=admin_user)
    assert [json.loads(line) for line in comparisons_as_trl_jsonl(result.round)] == [
        {"prompt": "Why, though?", "chosen": "Because.", "rejected": "No reason."}
    ]


def test_a_file_over_the_size_limit_is_refused(admin_user, settings):
    settings.IMPORT_MAX_BYTES = 50
    with pytest.raises(InvalidInput, match="larger than the import limit of 50 bytes"):
        import_pairs("pairs.jsonl", jsonl(PAIRS), user=admin_user)
    assert LabelingRound.objects.count() == 0


def test_an_imported_round_hands_out_no_work(admin_user, labeler):
    import_pairs("pairs.jsonl", jsonl(PAIRS), user=admin_user)
    assert assign_next(labeler) is None
    assert assign_next(admin_user) is None


def test_the_imported_round_trains_from_the_current_policy(admin_user):
    PolicyVersion.objects.create(number=1, artifact_path="/models/base", is_current=True)
    round_ = import_pairs("pairs.jsonl", jsonl(PAIRS), user=admin_user).round
    assert round_.policy_version.number == 1


def test_the_hh_rlhf_sample_imports_in_a_few_seconds(admin_user):
    started = time.monotonic()
    with HH_SAMPLE.open("rb") as f:
        result = import_pairs(HH_SAMPLE.name, f, user=admin_user, source="hh-rlhf")
    elapsed = time.monotonic() - started
    # 1,303 rows, one of which repeats an earlier row's prompt with other answers.
    assert (result.created, len(result.duplicate_lines), result.skipped_invalid) == (1302, 1, 0)
    assert Comparison.objects.filter(ranking__assignment__round=result.round).count() == 1302
    assert elapsed < 20, f"import took {elapsed:.1f}s"


def test_later_rounds_train_on_imported_pairs(admin_user, labeler):
    """The reward model and DPO read every ranking of rounds up to theirs, K=2 ones included."""

    imported = import_pairs("pairs.jsonl", jsonl(PAIRS), user=admin_user).round
    later = make_round(n_prompts=1)
    a = assign_next(labeler)
    submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("ABCD")))
    assert later.number > imported.number
    examples = training_rankings(later.number)
    assert sorted(len(e.completions) for e in examples) == [2, 2, 2, 4]
    assert RankedExample("What is 2+2?", ["4", "5"]) in examples
    assert training_rankings(imported.number - 1) == []
    # DPO's pairs are the same comparisons the TRL export streams.
    exported = [json.loads(line) for line in comparisons_as_trl_jsonl(imported)]
    pairs = training_comparisons(later.number)
    assert [(e["prompt"], e["chosen"], e["rejected"]) for e in exported] == pairs[: len(exported)]
    assert len(pairs) == len(exported) + 6  # and the later round's C(4,2)
