"""pyruntime.jsonlite parses and writes JSON as the standard `json` module does, on
`_json` alone; these compare the two on the inputs a runtime meets."""
from __future__ import annotations

import json

import pytest

from pyruntime import jsonlite

DOCUMENTS = [
    '{"ociVersion": "1.2.0", "process": {"args": ["sh", "-c", "echo \\u00e9"]}}',
    '  \n\t{"a": [1, 2.5, -3e2, true, false, null], "b": {}}\r\n ',
    '[]',
    '"text"',
    '{"big": 18446744073709551615, "neg": -9223372036854775808}',
    '{"inf": Infinity, "nan": NaN, "ninf": -Infinity}',
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_loads_matches_json(text):
    expected = json.loads(text)
    for given in (text, text.encode()):
        got = jsonlite.loads(given)
        # NaN is not equal to itself: compare the texts json writes for both.
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_a_utf8_byte_order_mark_is_skipped_as_json_does_for_bytes():
    text = '{"hostname": "caf\u00e9"}'.encode()
    assert jsonlite.loads(b"\xef\xbb\xbf" + text) == json.loads(b"\xef\xbb\xbf" + text)
    assert jsonlite.loads(b"\xef\xbb\xbf" + text) == {"hostname": "caf\u00e9"}


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": 1} x', '{"a": 1,}', "[1 2]",
                                  b"\xef\xbb\xbf", "\ufeff{}"])
def test_errors_are_json_decode_errors_at_the_same_place(text):
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        jsonlite.loads(text)
    assert (got.value.msg, got.value.pos) == (expected.value.msg, expected.value.pos)


def test_invalid_utf8_is_refused():
    with pytest.raises(UnicodeDecodeError):
        jsonlite.loads(b'{"a": "\xff"}')


@pytest.mark.parametrize("value", [
    {"id": "c1", "pid": 42, "nested": {"list": [1, "two", None, True, 2.5]}},
    ["\u00e9\n\"quoted\"", {}], "plain", 7,
])
def test_dumps_is_compact_json(value):
    assert jsonlite.dumps(value) == json.dumps(value, separators=(",", ":"))
    assert jsonlite.loads(jsonlite.dumps(value)) == value


def test_dumps_refuses_what_json_refuses():
    with pytest.raises(TypeError, match="set"):
        jsonlite.dumps({"a": {1, 2}})


@pytest.mark.parametrize("value", [
    {}, [], "plain", 7, None, 2.5, {"a": {}, "b": []},
    {"ociVersion": "1.2.0", "id": "c1", "pid": 42, "status": "running",
     "annotations": {"org.example/key": "va\"lue\n", "é": "😀"}},
    [1, "x", [2, [3, []]], {"deep": {"er": [None, True, False]}}],
    {"nan": float("nan")}, {1: "non-string key"}, (1, 2), {"tuple": (1, 2)},
])
def test_dumps_pretty_is_json_with_indent_2(value):
    # Plain dicts and lists are laid out by jsonlite; the rest falls back to json.
    assert jsonlite.dumps_pretty(value) == json.dumps(value, indent=2)


def test_dumps_pretty_of_a_state_does_not_import_json():
    import subprocess
    import sys

    code = ("import sys; from pyruntime import jsonlite; "
            "jsonlite.dumps_pretty({'id': 'c1', 'annotations': {'a': 'b'}, 'pid': 1}); "
            "print('json' in sys.modules, 're' in sys.modules)")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(__import__("pathlib").Path(
                             __file__).resolve().parents[2])}).stdout
    assert out.split() == ["False", "False"]
