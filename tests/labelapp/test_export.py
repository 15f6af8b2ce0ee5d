import json
import sys
from dataclasses import replace

import datasets
import pytest

from labelapp.models import Comparison, Completion, Ranking
from labelapp.services import exports
from labelapp.services.assignment import assign_next
from labelapp.services.errors import InvalidInput
from labelapp.services.exports import (
    ExportUnavailable,
    comparisons_as_trl_jsonl,
    rankings_as_jsonl,
    save_comparisons_hf,
)
from labelapp.services.quality import trust_by_labeler
from labelapp.services.ranking import RankingSubmission, submit_ranking
from tests.conftest import make_round, make_user
from tests.labelapp.test_trust import submit_by_text, texts_of


def rank_all(labeler, round_, ranking="BADC", **extra) -> list:
    """Rank every prompt of the round the same way; the rankings, in order."""
    rankings = []
    while (a := assign_next(labeler)) is not None:
        submission = RankingSubmission(ranking=list(ranking), **extra)
        rankings.append(submit_ranking(labeler, a.pk, submission)[0])
    return rankings


def expected_rows(round_) -> list[dict]:
    rows = Comparison.objects.filter(ranking__assignment__round=round_).order_by("id")
    return [
        {
            "prompt": c.ranking.assignment.prompt.text,
            "chosen": c.chosen.text,
            "rejected": c.rejected.text,
        }
        for c in rows
    ]


def write_jsonl(path, lines) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.writelines(lines)


def test_the_trl_jsonl_loads_with_datasets_and_has_the_round_s_comparisons(labeler, tmp_path):
    round_ = make_round(n_prompts=3, prefix="Ünïcode <b>")
    make_round(n_prompts=2, prefix="Other round")  # must not leak into the export
    rank_all(labeler, round_)
    path = tmp_path / "round.jsonl"
    write_jsonl(path, comparisons_as_trl_jsonl(round_))

    loaded = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded.column_names == ["prompt", "chosen", "rejected"]
    assert loaded.num_rows == 3 * 6  # C(4,2) pairs per ranking
    assert loaded.to_list() == expected_rows(round_)
    assert all(row["prompt"].startswith("Ünïcode <b>") for row in loaded)


def test_save_to_disk_loads_back_with_load_from_disk(labeler, tmp_path):
    round_ = make_round(n_prompts=2)
    rank_all(labeler, round_)
    out = tmp_path / "hf"
    assert save_comparisons_hf(round_, out) == 12
    loaded = datasets.load_from_disk(str(out))
    assert loaded.to_list() == expected_rows(round_)


def test_parquet_export_has_the_same_rows(labeler, tmp_path):
    round_ = make_round(n_prompts=2)
    rank_all(labeler, round_)
    path = tmp_path / "out" / "round.parquet"
    assert save_comparisons_hf(round_, path, format="parquet") == 12
    loaded = datasets.load_dataset(
        "parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded.to_list() == expected_rows(round_)


def test_a_second_hf_export_sees_rankings_added_since_the_first(labeler, other_labeler, tmp_path):
    round_ = make_round(n_prompts=1, overlap=2)
    rank_all(labeler, round_)
    assert save_comparisons_hf(round_, tmp_path / "first") == 6
    rank_all(other_labeler, round_, ranking="ABCD")
    assert save_comparisons_hf(round_, tmp_path / "second") == 12  # not a cached copy
    assert datasets.load_from_disk(str(tmp_path / "second")).to_list() == expected_rows(round_)


def test_a_round_without_comparisons_exports_an_empty_dataset(db, tmp_path):
    round_ = make_round(n_prompts=1)
    assert list(comparisons_as_trl_jsonl(round_)) == []
    assert save_comparisons_hf(round_, tmp_path / "hf") == 0
    loaded = datasets.load_from_disk(str(tmp_path / "hf"))
    assert (loaded.num_rows, loaded.column_names) == (0, ["prompt", "chosen", "rejected"])


def test_an_unknown_hf_format_is_refused(db, tmp_path):
    with pytest.raises(InvalidInput, match="format must be one of dataset, parquet"):
        save_comparisons_hf(make_round(), tmp_path / "x", format="arrow")


def test_without_the_datasets_package_the_hf_export_says_so(db, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(ExportUnavailable, match="needs the `datasets` package"):
        save_comparisons_hf(make_round(), tmp_path / "hf")


def test_rankings_jsonl_has_the_labeler_order_flags_and_times(labeler):
    round_ = make_round(n_prompts=2)
    a = assign_next(labeler)
    by_label = dict(zip("ABCD", a.order, strict=True))
    submission = RankingSubmission(
        ranking=list("CADB"),
        flags={"B": ["hallucination"], "C": ["harmful", "garbled"]},
        quality=5,
        time_spent_ms=4200,
        demonstration="A better answer.",
    )
    ranking, _ = submit_ranking(labeler, a.pk, submission)
    rank_all(labeler, round_)

    lines = [json.loads(line) for line in rankings_as_jsonl(round_)]
    assert len(lines) == 2
    first = lines[0]
    assert first["round"] == round_.number and first["ranking_id"] == ranking.pk
    assert first["prompt"] == {"id": a.prompt_id, "text": a.prompt.text}
    assert first["labeler"] == "alice"
    best_to_worst = [by_label[x] for x in "CADB"]
    assert [c["id"] for c in first["completions"]] == best_to_worst
    assert all(c["text"].startswith("answer ") for c in first["completions"])
    assert first["labels"] == list("CADB")
    assert first["flags"] == {
        str(by_label["B"]): ["hallucination"],
        str(by_label["C"]): ["garbled", "harmful"],
    }
    assert (first["quality"], first["time_spent_ms"]) == (5, 4200)
    assert first["created_at"] == ranking.created_at.isoformat()
    assert first["demonstration"] == "A better answer."
    assert lines[1]["demonstration"] is None and lines[1]["flags"] == {}


def test_exports_take_a_bounded_number_of_queries(
    db, django_assert_max_num_queries, tmp_path, monkeypatch
):
    labelers = [make_user(f"labeler{i}") for i in range(3)]
    round_ = make_round(n_prompts=12, overlap=3)
    for labeler in labelers:
        rank_all(labeler, round_)
    with django_assert_max_num_queries(1):
        trl = list(comparisons_as_trl_jsonl(round_))
    # The rankings, then the completions' texts once per batch of rankings.
    with django_assert_max_num_queries(2):
        rankings = list(rankings_as_jsonl(round_))
    assert (len(trl), len(rankings)) == (36 * 6, 36)
    monkeypatch.setattr(exports, "CHUNK_SIZE", 10)
    with django_assert_max_num_queries(1 + 4):
        assert list(rankings_as_jsonl(round_)) == rankings
    with django_assert_max_num_queries(3):
        save_comparisons_hf(round_, tmp_path / "hf")


def test_ties_and_all_bad_in_every_export(labeler):
    round_ = make_round(n_prompts=2)
    tie = assign_next(labeler)
    by_label = dict(zip("ABCD", tie.order, strict=True))
    submit_ranking(labeler, tie.pk, RankingSubmission(ranking=["C", ["A", "D"], "B"]))
    bad = assign_next(labeler)
    submit_ranking(labeler, bad.pk, RankingSubmission(all_bad=True, demonstration="Mine."))

    # TRL: the tied pair and the all-bad task give no rows; 5 of the tie's 6 pairs remain.
    trl = [json.loads(line) for line in comparisons_as_trl_jsonl(round_)]
    text = dict(Completion.objects.filter(pk__in=tie.order).values_list("id", "text"))
    assert len(trl) == 5
    assert {(r["chosen"], r["rejected"]) for r in trl}.isdisjoint(
        {(text[by_label["A"]], text[by_label["D"]]), (text[by_label["D"]], text[by_label["A"]])}
    )
    # Raw: the groups are kept; all bad lists the answers shown, and the better one.
    first, second = (json.loads(line) for line in rankings_as_jsonl(round_))
    assert first["ties"] == [[by_label["A"], by_label["D"]]] and not first["all_bad"]
    assert second["all_bad"] and second["ties"] == [] and second["labels"] == []
    assert sorted(c["id"] for c in second["completions"]) == sorted(bad.order)
    assert second["demonstration"] == "Mine."
    # What the reward model trains on: the tie with its groups; all bad is not there.
    (example,) = exports.training_rankings(round_.number)
    assert example.groups == [0, 1, 1, 2]
    assert example.completions == [text[by_label[x]] for x in "CADB"]


def rank_with_a_contrarian(round_, honest: list, contrarian) -> None:
    """Every labeler ranks every prompt of the round: the honest ones by their answers' text,
    the contrarian in the reverse order."""
    for user in [*honest, contrarian]:
        while (task := assign_next(user)) is not None:
            best_first = sorted(texts_of(round_, task.prompt_id), reverse=user == contrarian)
            submit_by_text(user, task, best_first)


def test_trust_weighting_gives_a_distrusted_labelers_rankings_less_weight(
    labeler, other_labeler, settings
):
    settings.TRUST_PRIOR_PAIRS = 12
    contrarian = make_user("contrarian", "labelers")
    round_ = make_round(n_prompts=4, overlap=3)
    rank_with_a_contrarian(round_, [labeler, other_labeler], contrarian)
    trust = trust_by_labeler()
    # The two others outvote all 4 x 6 of the contrarian's judgements: (0 + 12) / (24 + 12).
    # An honest labeler's two others split, a tie that counts no pair: no evidence, trust 1.
    assert trust[contrarian.pk] == pytest.approx(12 / 36)
    assert labeler.pk not in trust and other_labeler.pk not in trust

    weighted = exports.training_rankings(round_.number, trust_weighting=True)
    by = list(Ranking.objects.order_by("id").values_list("labeler_id", flat=True))
    assert [e.weight for e in weighted] == [trust.get(labeler_id, 1.0) for labeler_id in by]
    assert sorted({e.weight for e in weighted}) == [trust[contrarian.pk], 1.0]
    # Off, the same rankings, each of weight 1.
    plain = exports.training_rankings(round_.number)
    assert {e.weight for e in plain} == {1.0}
    assert [replace(e, weight=1.0) for e in weighted] == plain
