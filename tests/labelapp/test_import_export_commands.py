import json
from io import StringIO

import datasets
import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.db import connections

from labelapp.models import LabelingRound, Prompt
from labelapp.services.assignment import assign_next
from labelapp.services.ranking import RankingSubmission, submit_ranking
from tests.conftest import make_round

PAIRS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": "Name a color.", "chosen": "Blue.", "rejected": "Loud."},
]


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def exit_status(capsys, monkeypatch):
    """Run a command as `manage.py` would; returns (exit status, stderr)."""
    # run_from_argv closes the connections at the end, which would end the test's transaction.
    monkeypatch.setattr(connections, "close_all", lambda: None)

    def run_argv(*argv) -> tuple[int, str]:
        command = load_command_class("labelapp", argv[0])
        with pytest.raises(SystemExit) as exited:
            command.run_from_argv(["manage.py", *argv])
        return exited.value.code, capsys.readouterr().err

    return run_argv


def write(tmp_path, name, rows) -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_import_prompts_prints_a_summary(db, tmp_path):
    path = write(tmp_path, "p.jsonl", [{"prompt": "one"}, {"prompt": "two"}, {"prompt": "one"}])
    out, _ = run("import_prompts", path, "--source", "demo", "--tag", "a", "--tag", "b")
    assert out.strip() == (
        "2 prompts created, 1 duplicates in the file and 0 already present skipped, "
        "0 invalid rows skipped."
    )
    assert Prompt.objects.get(text="one").tags == ["a", "b"]


def test_a_bad_prompts_file_exits_non_zero_naming_the_lines(db, tmp_path, exit_status):
    path = write(tmp_path, "p.jsonl", [{"prompt": "fine"}, {"text": ""}, {"nothing": 1}])
    status, err = exit_status("import_prompts", path)
    assert status == 1
    assert "line 2: text is empty" in err and "line 3: prompt is missing" in err
    assert "--skip-invalid" in err
    assert Prompt.objects.count() == 0


def test_skip_invalid_imports_the_rest_and_lists_the_skipped_lines(db, tmp_path):
    path = write(tmp_path, "p.jsonl", [{"prompt": "fine"}, {"text": ""}])
    out, err = run("import_prompts", path, "--skip-invalid")
    assert "1 prompts created" in out and "1 invalid rows skipped" in out
    assert err.strip() == "skipped line 2: text is empty"


def test_a_missing_file_or_a_wrong_type_is_a_command_error(db, tmp_path):
    with pytest.raises(CommandError, match="cannot read .*nope.jsonl"):
        run("import_prompts", str(tmp_path / "nope.jsonl"))
    (tmp_path / "p.txt").write_text("hi")
    with pytest.raises(CommandError, match="unsupported file type"):
        run("import_prompts", str(tmp_path / "p.txt"))


def test_import_pairs_then_export_gives_the_pairs_back(admin_user, tmp_path):
    path = write(tmp_path, "hh.jsonl", PAIRS)
    out, _ = run("import_pairs", path, "--user", "root", "--source", "hh")
    round_ = LabelingRound.objects.get()
    assert out.startswith(f"2 pairs imported into round {round_.number} (2 new prompts)")

    out, err = run("export_comparisons", str(round_.number))
    assert [json.loads(line) for line in out.splitlines()] == PAIRS
    assert err.strip() == f"2 rows of round {round_.number}."


def test_import_pairs_needs_a_known_user(db, tmp_path, exit_status):
    path = write(tmp_path, "hh.jsonl", PAIRS)
    status, err = exit_status("import_pairs", path, "--user", "ghost")
    assert (status, err.strip()) == (1, "CommandError: no user 'ghost'")
    assert LabelingRound.objects.count() == 0


def test_export_formats_write_to_out(labeler, tmp_path):
    round_ = make_round(n_prompts=1)
    a = assign_next(labeler)
    submit_ranking(labeler, a.pk, RankingSubmission(ranking=list("ABCD"), flags={"A": ["harmful"]}))
    number = str(round_.number)

    out, _ = run("export_comparisons", number, "--out", str(tmp_path / "trl.jsonl"))
    assert out.strip() == f"Wrote 6 rows of round {number} to {tmp_path / 'trl.jsonl'}."
    loaded = datasets.load_dataset(
        "json", data_files=str(tmp_path / "trl.jsonl"), split="train", cache_dir=str(tmp_path)
    )
    assert loaded.num_rows == 6

    run("export_comparisons", number, "--format", "rankings", "--out", str(tmp_path / "r.jsonl"))
    (line,) = (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()
    ranking = json.loads(line)
    assert ranking["labeler"] == "alice" and ranking["flags"] == {str(a.order[0]): ["harmful"]}

    run("export_comparisons", number, "--format", "hf", "--out", str(tmp_path / "hf"))
    assert datasets.load_from_disk(str(tmp_path / "hf")).num_rows == 6
    run("export_comparisons", number, "--format", "parquet", "--out", str(tmp_path / "r.parquet"))
    assert (tmp_path / "r.parquet").stat().st_size > 0


def test_export_refuses_an_unknown_round_and_hf_without_out(db, exit_status):
    round_ = make_round(n_prompts=1)
    status, err = exit_status("export_comparisons", "999")
    assert (status, err.strip()) == (1, "CommandError: no round 999")
    status, err = exit_status("export_comparisons", str(round_.number), "--format", "hf")
    assert (status, err.strip()) == (1, "CommandError: --format hf needs --out PATH")
