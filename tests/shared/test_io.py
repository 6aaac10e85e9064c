"""JSON Lines reads (shared/io.py): a line holds every character JSON leaves raw inside a string, whatever
``str.splitlines()`` would make of it (issue 28, item 16)."""

from __future__ import annotations

import json

from shared.io import atomic_write_text, jsonl_lines, read_jsonl

# every separator str.splitlines() splits at; json.dumps escapes the control ones and leaves U+0085, U+2028 and
# U+2029 raw with ensure_ascii=False
SEPARATORS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def rows() -> list[dict]:
    return [{"i": i, "text": f"before{sep}after", "all": SEPARATORS + "\r\n"} for i, sep in enumerate(SEPARATORS)]


def test_every_line_separator_inside_a_json_string_stays_in_its_line(tmp_path):
    lines = [json.dumps(r, ensure_ascii=False) for r in rows()]
    assert all(raw in line for line in lines for raw in "\x85\u2028\u2029")  # written raw, not escaped
    text = "\n".join(lines) + "\n"
    assert len(text.splitlines()) > len(lines)  # what the readers did before: more "lines" than rows
    assert [json.loads(line) for _, line in jsonl_lines(text)] == rows()
    assert [n for n, _ in jsonl_lines(text)] == list(range(1, len(lines) + 1))
    path = atomic_write_text(tmp_path / "rows.jsonl", text)
    assert read_jsonl(path) == rows()


def test_crlf_blank_lines_and_a_torn_last_line(tmp_path):
    good = [{"a": "x\u2028y"}, {"b": [1, 2]}]
    body = "\r\n".join(json.dumps(r, ensure_ascii=False) for r in good) + "\r\n\r\n  \n"
    path = tmp_path / "rows.jsonl"
    path.write_bytes(body.encode("utf-8") + b'{"cut": "\xe2\x80')  # a writer killed inside a UTF-8 sequence
    assert read_jsonl(path) == good
    assert [n for n, _ in jsonl_lines(body)] == [1, 2]
    assert read_jsonl(tmp_path / "missing.jsonl") == []
