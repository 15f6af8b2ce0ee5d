import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labelapp.models import Prompt, text_hash
from labelapp.services.errors import InvalidInput
from labelapp.services.import_files import InvalidRows, parse_prompt_file
from labelapp.services.imports import import_prompts
from tests.conftest import db_snapshot


def jsonl(*rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def unchanged():
    """What a refused import must leave as it was."""
    return db_snapshot(), sorted(Prompt.objects.values_list("text_hash", flat=True))


def test_jsonl_rows_become_prompts_with_their_fields(db):
    data = jsonl(
        {"prompt": "Write a haiku about rain.", "tags": ["poetry", "short"], "id": 7},
        {"text": "Explain TCP.", "external_id": "net-1", "source": "mine", "held_out": True},
    )
    result = import_prompts("prompts.jsonl", data, tags=["batch-1", "poetry"])
    assert (result.created, result.duplicates, result.skipped_invalid) == (2, 0, 0)
    haiku = Prompt.objects.get(text="Write a haiku about rain.")
    assert haiku.tags == ["poetry", "short", "batch-1"]
    assert (haiku.external_id, haiku.source, haiku.held_out) == ("7", "prompts.jsonl", False)
    assert haiku.text_hash == text_hash(haiku.text)
    tcp = Prompt.objects.get(text="Explain TCP.")
    assert (tcp.external_id, tcp.source, tcp.held_out) == ("net-1", "mine", True)


def test_csv_rows_become_prompts_with_tags_split_on_semicolons(db):
    data = (
        b"prompt,tags,id,held_out\r\n"
        b'Say hi,"greeting; short",a1,false\r\n'
        b'"A prompt, with a comma\r\nand two lines",,a2,yes\r\n'
    )
    result = import_prompts("prompts.csv", data, source="csv-batch")
    assert result.created == 2
    hi = Prompt.objects.get(external_id="a1")
    assert (hi.text, hi.tags, hi.held_out, hi.source) == (
        "Say hi",
        ["greeting", "short"],
        False,
        "csv-batch",
    )
    two_lines = Prompt.objects.get(external_id="a2")
    assert two_lines.text == "A prompt, with a comma\r\nand two lines"
    assert (two_lines.tags, two_lines.held_out) == ([], True)


def test_bad_rows_are_named_by_line_and_nothing_is_written(db):
    Prompt.objects.create(text="already here")
    before = unchanged()
    data = jsonl(
        {"prompt": "fine"},
        {"tags": ["x"]},
        "",
        {"prompt": "   "},
        {"prompt": "ok", "tags": "not;a;list", "held_out": "maybe"},
        {"prompt": 12},
        ["a", "list"],
        {"prompt": "x" * 20_001},
        {"prompt": "a", "text": "b"},
    )
    with pytest.raises(InvalidRows) as refused:
        import_prompts("prompts.jsonl", data)
    message = refused.value.detail
    assert message.splitlines() == [
        "7 invalid rows in prompts.jsonl; nothing was imported:",
        "line 2: prompt is missing",
        "line 4: prompt is empty",
        "line 5: held_out must be true or false",
        "line 6: prompt must be a string",
        "line 7: expected a JSON object {...}",
        "line 8: prompt is longer than 20,000 characters",
        "line 9: give one of prompt, text, not 2",
    ]
    assert [e.line for e in refused.value.errors] == [2, 4, 5, 6, 7, 8, 9]
    assert unchanged() == before


def test_more_than_twenty_bad_rows_are_listed_up_to_twenty(db):
    data = jsonl(*[{"nope": i} for i in range(25)])
    with pytest.raises(InvalidInput) as refused:
        import_prompts("prompts.jsonl", data)
    lines = refused.value.detail.splitlines()
    assert lines[1] == "line 1: prompt is missing" and lines[20] == "line 20: prompt is missing"
    assert lines[21:] == ["and 5 more"]
    assert Prompt.objects.count() == 0


def test_a_malformed_json_line_is_named_by_its_number(db):
    data = jsonl({"prompt": "good"}, '{"prompt": "unterminated', {"prompt": "also good"})
    with pytest.raises(InvalidInput, match=r"line 2: not valid JSON \(Unterminated string"):
        import_prompts("prompts.jsonl", data)
    assert Prompt.objects.count() == 0


def test_skip_invalid_imports_the_good_rows_and_reports_the_others(db):
    data = jsonl({"prompt": "good one"}, {"prompt": ""}, "{oops", {"prompt": "good two"})
    result = import_prompts("prompts.jsonl", data, skip_invalid=True)
    assert (result.created, result.skipped_invalid) == (2, 2)
    assert [str(e) for e in result.errors] == [
        "line 2: prompt is empty",
        "line 3: not valid JSON (Expecting property name enclosed in double quotes, column 2)",
    ]
    assert set(Prompt.objects.values_list("text", flat=True)) == {"good one", "good two"}


def test_duplicates_in_the_file_and_in_the_database_are_skipped_and_counted(db):
    Prompt.objects.create(text="stored before", source="old")
    data = jsonl(
        {"prompt": "new"},
        {"prompt": "new", "tags": ["second copy"]},
        {"prompt": "stored before", "source": "new"},
        {"prompt": "New"},  # the hash is of the exact text: another prompt
    )
    result = import_prompts("prompts.jsonl", data)
    assert (result.created, result.duplicates_in_file, result.already_present) == (2, 1, 1)
    assert result.duplicates == 2
    assert Prompt.objects.get(text="new").tags == []  # the first copy wins
    assert Prompt.objects.get(text="stored before").source == "old"  # left as it was
    assert import_prompts("prompts.jsonl", data).created == 0  # a second run adds nothing


def test_a_file_over_the_size_limit_is_refused(db, settings):
    settings.IMPORT_MAX_BYTES = 100
    data = jsonl(*[{"prompt": f"prompt {i}"} for i in range(10)])
    assert len(data) > 100
    with pytest.raises(InvalidInput, match="larger than the import limit of 100 bytes"):
        import_prompts("prompts.jsonl", data)
    with pytest.raises(InvalidInput, match="larger than the import limit"):
        import_prompts("prompts.jsonl", io.BytesIO(data))
    assert import_prompts("prompts.jsonl", data, max_bytes=len(data)).created == 10


def test_other_file_types_are_refused(db):
    with pytest.raises(
        InvalidInput, match=r"prompts.txt: unsupported file type; use .jsonl or .csv"
    ):
        import_prompts("prompts.txt", b'{"prompt": "hi"}\n')


def test_a_file_that_is_not_utf8_is_refused_with_its_line(db):
    data = jsonl({"prompt": "fine"}) + '{"prompt": "caf\xe9"}\n'.encode("latin-1")
    with pytest.raises(InvalidInput, match=r"not UTF-8 text \(line 2\)"):
        import_prompts("prompts.jsonl", data)
    assert Prompt.objects.count() == 0


def test_bom_crlf_blank_lines_and_unicode_are_handled(db):
    rows = [{"prompt": "Übersetze: «bonjour» 👋"}, {"prompt": "line\u2028separator inside"}]
    text = "\r\n\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n  \r\n"
    result = import_prompts("prompts.jsonl", "\ufeff".encode() + text.encode())
    assert result.created == 2
    assert set(Prompt.objects.values_list("text", flat=True)) == {r["prompt"] for r in rows}

    csv_data = "\ufeffprompt,tags\r\n\r\nÉcris un poème,fr\r\n".encode()
    import_prompts("prompts.csv", csv_data)
    assert Prompt.objects.get(text="Écris un poème").tags == ["fr"]


def test_html_in_a_prompt_is_stored_verbatim(db):
    html = '<script>alert("x")</script> & <b>bold</b>'
    import_prompts("prompts.jsonl", jsonl({"prompt": html}))
    assert Prompt.objects.get().text == html


def test_csv_rows_with_the_wrong_number_of_fields_are_named(db):
    data = b'prompt,source\nfine,a\n"two\nlines",b,extra\nalso fine,c\n'
    parsed = parse_prompt_file("prompts.csv", data)
    assert [r.text for r in parsed.rows] == ["fine", "also fine"]
    assert [str(e) for e in parsed.errors] == ["line 3: has 3 fields, the header has 2"]
    assert [r.line for r in parsed.rows] == [2, 5]


def test_broken_csv_quoting_refuses_the_file_at_its_line(db):
    with pytest.raises(InvalidInput, match=r"prompts.csv: line 3: unexpected end of data"):
        import_prompts("prompts.csv", b'prompt\nfine\n"never closed\n')
    with pytest.raises(InvalidInput, match=r"line 2: ',' expected after '\"'"):
        import_prompts("prompts.csv", b'prompt,tags\n"a"b,c\n')
    assert Prompt.objects.count() == 0


def test_a_csv_file_without_a_prompt_column_names_every_row(db):
    with pytest.raises(InvalidRows, match="line 2: prompt is missing"):
        import_prompts("prompts.csv", b"question\nwhat?\n")


def test_an_empty_file_is_refused(db):
    with pytest.raises(InvalidInput, match="prompts.jsonl has no rows"):
        import_prompts("prompts.jsonl", b"\n\n")


def test_an_uploaded_file_is_read_like_bytes(db):
    upload = SimpleUploadedFile("Prompts.JSONL", jsonl({"prompt": "from the form"}))
    assert import_prompts(upload.name, upload).created == 1


def test_a_nul_character_is_an_invalid_row(db):
    with pytest.raises(InvalidRows, match="line 1: prompt contains a NUL character"):
        import_prompts("prompts.jsonl", jsonl({"prompt": "a\u0000b"}))
