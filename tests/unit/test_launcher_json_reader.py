"""native/launcher/json_reader.c against Python's json: which documents are valid, what a
member holds, strings with every kind of escape, integers, falsy values. The reader may
refuse what Python takes (the native command then hands over to Python), but never read a
value differently, except on the safe side (a float zero is true: hooks to run)."""
from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest

from tests.integration import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")

_PROBE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json_reader.h"

/* probe FILE doc | probe FILE get KEY... | probe FILE walk KEY... */
int main(int argc, char **argv)
{
    static char text[1 << 20];
    FILE *file = fopen(argv[1], "rb");
    size_t length = fread(text, 1, sizeof text, file);
    fclose(file);
    const char *end = text + length;
    const char *value = json_document(text, end);
    if (strcmp(argv[2], "doc") == 0) {
        puts(value ? "valid" : "invalid");
        return 0;
    }
    for (int i = 3; i < argc && value; i++)
        value = json_member(value, end, argv[i]);
    if (!value) {
        puts("absent");
        return 0;
    }
    if (strcmp(argv[2], "walk") == 0) {
        struct json_walk walk;
        const char *key, *item;
        int more;
        if (json_enter(&walk, value, end) != 0) {
            puts("error");
            return 0;
        }
        while ((more = json_next(&walk, &key, &item)) == 1) {
            char name[256];
            if (key && json_string(key, end, name, sizeof name) != 0)
                strcpy(name, "?");
            printf("%s=%.*s\n", key ? name : "-", (int)(json_skip_value(item, end) - item), item);
        }
        puts(more == 0 ? "end" : "error");
        return 0;
    }
    char decoded[4096];
    long long number;
    if (json_string(value, end, decoded, sizeof decoded) == 0) {
        printf("s:");
        for (unsigned char *c = (unsigned char *)decoded; *c; c++)
            printf("%02x", *c);
        printf("\n");
    } else if (json_integer(value, end, &number) == 0) {
        printf("i:%lld\n", number);
    } else {
        printf("x\n");
    }
    printf("%s\n", json_is_falsy(value, end) ? "falsy" : "truthy");
    return 0;
}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    directory = tmp_path_factory.mktemp("json-probe")
    source = directory / "probe.c"
    source.write_text(_PROBE)
    binary = directory / "probe"
    launcher = REPO_ROOT / "native" / "launcher"
    subprocess.run(["cc", "-O1", "-Wall", "-Werror", "-I", str(launcher), "-o", str(binary),
                    str(source), str(launcher / "json_reader.c")], check=True)
    counter = iter(range(1_000_000))

    def run(document: str | bytes, *args: str) -> list[str]:
        path = directory / f"doc{next(counter)}.json"
        path.write_bytes(document if isinstance(document, bytes) else document.encode())
        out = subprocess.run([str(binary), str(path), *args], capture_output=True, text=True,
                             check=True).stdout
        return out.splitlines()

    return run


def python_valid(document: str) -> bool:
    try:
        json.loads(document)
    except ValueError:
        return False
    return True


DOCUMENTS = [
    '{}', '[]', ' {"a": 1} ', '{"a":[1,2,{"b":null}]}', '"x"', '0', '-0', '1.5e-3', '-12E+4',
    'true', 'false', 'null', '{"a":"\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/"}',
    # invalid
    '', ' ', '{', '{"a"}', '{"a":}', '{"a":1,}', '[1,]', '[1 2]', '{a:1}', "{'a':1}",
    '01', '1.', '.5', '-', '1e', '1e+', '+1', 'tru', 'nul', 'falsey', '{"a":1}x',
    '{"a":1} {}', '"\\x"', '"\\u12"', '"a\tb"', '"unterminated', '[' * 60 + ']' * 60,
    '{"a":"\\u00e"}',
]
# Python takes these; the reader refuses them (not JSON, or deeper than it goes).
REFUSED_THOUGH_PYTHON_TAKES = ['NaN', 'Infinity', '-Infinity', '{"a":NaN}', '[' * 70 + ']' * 70]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_valid_documents_are_those_python_takes(probe, document):
    assert probe(document, "doc") == ["valid" if python_valid(document) else "invalid"]


@pytest.mark.parametrize("document", REFUSED_THOUGH_PYTHON_TAKES)
def test_what_the_reader_refuses(probe, document):
    assert python_valid(document)
    assert probe(document, "doc") == ["invalid"]


def test_deep_nesting_is_refused_not_overflowed(probe):
    # Python takes it; the reader stops at its depth limit and the command goes to Python.
    assert probe('[' * 100_000 + ']' * 100_000, "doc") == ["invalid"]


STRINGS = ["plain", "", "with space", "tab\there", "quote\"d", "back\\slash", "slash/",
           "é", "日本", "😀 emoji", "\u2028", "/sys/fs/cgroup/memory/pyruntime/x",
           "control\x01\x1f", "\b\f\n\r"]


@pytest.mark.parametrize("value", STRINGS)
@pytest.mark.parametrize("ascii_only", [True, False])
def test_strings_decode_as_python_decodes_them(probe, value, ascii_only):
    document = json.dumps({"k": value}, ensure_ascii=ascii_only)
    assert probe(document, "get", "k")[0] == "s:" + value.encode().hex()


def test_a_string_with_a_nul_or_a_lone_surrogate_is_refused(probe):
    assert probe('{"k":"a\\u0000b"}', "get", "k")[0] == "x"
    assert probe('{"k":"\\ud800"}', "get", "k")[0] == "x"
    assert probe('{"k":"\\udc00x"}', "get", "k")[0] == "x"


@pytest.mark.parametrize("number", [0, 1, -1, 2709374, 2**63 - 1, -(2**63)])
def test_integers(probe, number):
    assert probe(json.dumps({"k": number}), "get", "k")[0] == f"i:{number}"


@pytest.mark.parametrize("text", ["1.0", "1e3", str(2**63), "\"12\"", "true"])
def test_what_is_not_an_integer_is_refused(probe, text):
    assert probe('{"k":%s}' % text, "get", "k")[0] != f"i:{text}"
    assert probe('{"k":%s}' % text, "get", "k")[0].startswith(("x", "s:"))


@pytest.mark.parametrize("text", ["null", "false", "0", '""', "[]", "{}", "[ ]", "{ }",
                                  "true", "1", '"0"', "[0]", '{"a":null}', "0.0", "-0"])
def test_falsy_is_pythons_falsy(probe, text):
    # Python's bool() of the value, except that zeros written as floats or "-0" read as
    # true: the safe side, where true means "leave it to Python".
    expected = not json.loads(text) if text not in ("0.0", "-0") else False
    assert probe('{"k":%s}' % text, "get", "k")[1] == ("falsy" if expected else "truthy")


def test_member_lookup_walks_nested_objects_and_skips_the_rest(probe):
    document = json.dumps({
        "config": {"hooks": {"poststop": [{"path": "/bin/true"}]}, "x": [1, {"hooks": 1}]},
        "hooks": "top", "pid": 5,
    })
    assert probe(document, "get", "pid")[0] == "i:5"
    assert probe(document, "get", "hooks")[0] == "s:" + b"top".hex()
    assert probe(document, "get", "config", "hooks", "poststop")[1] == "truthy"
    assert probe(document, "get", "config", "hooks", "poststart") == ["absent"]
    assert probe(document, "get", "missing") == ["absent"]


def test_walking_an_object_and_an_array(probe):
    document = '{"o": {"a": "x", "": 1, "b\\u00e9": [2]}, "l": [ "p", {"q": 0}, [] ], "e": []}'
    assert probe(document, "walk", "o") == ['a="x"', "=1", "bé=[2]", "end"]
    assert probe(document, "walk", "l") == ['-="p"', '-={"q": 0}', "-=[]", "end"]
    assert probe(document, "walk", "e") == ["end"]
    assert probe(document, "walk", "o", "a") == ["error"]


def test_random_documents_read_as_python_reads_them(probe):
    generator = random.Random(20261123)

    def character() -> str:
        code = generator.choice([generator.randrange(32, 127), generator.randrange(1, 0x10FFFF)])
        return chr(code if not 0xD800 <= code <= 0xDFFF else code - 0x1000)

    def value(depth: int):
        kind = generator.choice("sinbzlo" if depth < 4 else "sinbz")
        if kind == "s":
            return "".join(character() for _ in range(generator.randrange(8)))
        if kind == "i":
            return generator.randrange(-2**40, 2**40)
        if kind == "n":
            return None
        if kind == "b":
            return generator.random() < 0.5
        if kind == "z":
            return generator.random() * 1e6
        if kind == "l":
            return [value(depth + 1) for _ in range(generator.randrange(4))]
        return {f"k{i}": value(depth + 1) for i in range(generator.randrange(4))}

    for _ in range(40):
        target = value(1)
        document = {"pad": value(0), "target": target, "after": value(0)}
        text = json.dumps(document, ensure_ascii=generator.random() < 0.5,
                          indent=generator.choice([None, 1]))
        lines = probe(text, "get", "target")
        if isinstance(target, str):
            assert lines[0] == "s:" + target.encode().hex()
        elif isinstance(target, int) and not isinstance(target, bool):
            assert lines[0] == f"i:{target}"
        else:
            assert lines[0] == "x"
        # A float zero reads as true: the safe side (state.json never holds one there).
        assert lines[1] == ("falsy" if not target and not isinstance(target, float) else
                            "truthy")
