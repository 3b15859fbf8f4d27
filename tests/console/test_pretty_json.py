"""pretty_json: the text a page shows for data, job parameters and results."""

import json

import pytest

from core.pages import pretty_json

VALUES = [
    {"user_id": "7", "resource": "issueABC", "tags": ["a", "b"], "nested": {"deep": [1, {"x": None}]}},
    {"empty_list": [], "empty_object": {}, "flag": True, "ratio": 1.5, "big": 1e16, "tiny": 5e-324},
    {"name": "Zoë 😀", "quote": 'say "hi"\\n', "control": "\t\x01"},
    {"id": 2**70, "z": 1, "a": 2},
    {"1": "one", "b": {"d": 1, "c": 2}},
    [],
    "text",
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("sort_keys", [False, True])
def test_a_value_is_shown_indented_by_two_spaces_with_its_text_kept(value, sort_keys):
    assert pretty_json(value, sort_keys=sort_keys) == json.dumps(
        value, ensure_ascii=False, indent=2, sort_keys=sort_keys
    )


def test_sorted_keys_are_sorted_at_every_level():
    assert pretty_json({"b": {"y": 1, "x": 2}, "a": 0}, sort_keys=True) == (
        '{\n  "a": 0,\n  "b": {\n    "x": 2,\n    "y": 1\n  }\n}'
    )
