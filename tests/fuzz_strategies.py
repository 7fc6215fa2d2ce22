"""Hypothesis strategies for the fuzz tests: hostile YAML, JSON, PNG cards and templates.

Budgets: a normal pytest run tries ``LOLLMS_FUZZ_EXAMPLES`` inputs per target (default 150,
derandomized so CI is repeatable); `make fuzz` sets it to 100,000 with fresh randomness.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("LOLLMS_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 1000,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

# Characters that mean something to YAML, JSON or Jinja, plus some far from ASCII.
SYNTAX = ":-[]{}&*!|>'\"#%@`,?<=~+()\\/. \n\t\r"
UNICODE = "éßЖ中文😀\u200b\u202e\ufeff\x00\x1b\x85\u2028"
TEXT = st.text(alphabet=st.sampled_from(SYNTAX + UNICODE + "abcxyz019_"), max_size=60)

HUGE_INTEGERS = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=1, max_value=6000).map(lambda n: int("9" * min(n, 4000))),
)
NUMBER_TEXTS = st.one_of(
    st.integers(min_value=1, max_value=6000).map(lambda n: "1" * n),
    st.sampled_from(
        [
            "1e999999",
            "-1e999999",
            ".nan",
            ".inf",
            "-.Inf",
            "NaN",
            "Infinity",
            "-Infinity",
            "0x" + "f" * 3000,
            "0o777",
            "1_000_000",
            "0b1010",
            "1:20:30",
            "2024-13-45",
            "2024-02-30T25:61:61Z",
            "1e-400",
            "-0",
            "0.1e",
        ]
    ),
)


def _scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        HUGE_INTEGERS.filter(lambda n: abs(n) < 10**4000),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=40),
        TEXT,
    )


JSON_LIKE = st.recursive(
    _scalars(),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)

TAGS = st.sampled_from(
    [
        "!foo",
        "!!binary",
        "!!python/object/apply:os.system",
        "!!python/name:os.system",
        "!!timestamp",
        "!!set",
        "!!omap",
        "!!pairs",
        "!!int",
        "!!float",
        "!!bool",
        "!!null",
        "!!str",
        "!!map",
        "!!seq",
        "!!merge",
        "!<tag:yaml.org,2002:str>",
        "!<tag:example.com,2000:app/foo>",
        "!",
        "!!",
    ]
)


@st.composite
def alias_bombs(draw: st.DrawFn, keys: tuple[str, ...] = ("name", "description", "x")) -> str:
    """A "billion laughs": each level lists the previous one `width` times."""
    width = draw(st.integers(2, 12))
    levels = draw(st.integers(2, 12))
    shape = draw(st.sampled_from(["list", "map", "merge", "text"]))
    lines = ['l0: &l0 "' + "lol" * draw(st.integers(1, 2000)) + '"']
    for i in range(1, levels):
        if shape == "list":
            body = "[" + ", ".join([f"*l{i - 1}"] * width) + "]"
        elif shape == "map":
            body = "{" + ", ".join(f"k{j}: *l{i - 1}" for j in range(width)) + "}"
        elif shape == "merge" and i > 1:
            body = "{<<: [" + ", ".join([f"*l{i - 1}"] * width) + f"], m{i}: 1}}"
        else:
            body = "[" + ", ".join([f"*l{i - 1}"] * width) + "]"
        lines.append(f"l{i}: &l{i} {body}")
    head = "schema: 1\nid: bomb\nbombs:\n" + "".join(f"  {line}\n" for line in lines)
    key = draw(st.sampled_from(keys))
    return head + f"{key}: *l{levels - 1}\n"


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    depth = draw(st.integers(1, 3000))
    style = draw(st.sampled_from(["flow_list", "flow_map", "block_list", "block_map", "mixed"]))
    key = draw(st.sampled_from(["description", "pipeline", "settings", "x", "name"]))
    if style == "flow_list":
        value = "[" * depth + "1" + "]" * depth
    elif style == "flow_map":
        value = "{a: " * depth + "1" + "}" * depth
    elif style == "block_list":
        return f"schema: 1\nid: deep\n{key}:\n" + "".join(
            " " * (2 + 2 * i) + "-\n" for i in range(min(depth, 400))
        )
    elif style == "block_map":
        return f"schema: 1\nid: deep\n{key}:\n" + "".join(
            " " * (2 + 2 * i) + "a:\n" for i in range(min(depth, 400))
        )
    else:
        value = "[{a: " * depth + "1" + "}]" * depth
    return f"schema: 1\nid: deep\n{key}: {value}\n"


@st.composite
def tagged(draw: st.DrawFn) -> str:
    tag = draw(TAGS)
    value = draw(st.one_of(TEXT, NUMBER_TEXTS, st.sampled_from(["[1, 2]", "{a: 1}", "''"])))
    key = draw(st.sampled_from(["name", "description", "id", "conditioning", "sampling", "x"]))
    quoted = json.dumps(value) if draw(st.booleans()) else value
    return f"schema: 1\nid: t\nname: T\n{key}: {tag} {quoted}\n"


@st.composite
def dumped(draw: st.DrawFn, base: dict[str, Any] | None = None) -> str:
    """Random data (or a personality with random values) written as YAML, then maybe damaged."""
    data: Any = draw(JSON_LIKE)
    if base is not None:
        doc = dict(base)
        for _ in range(draw(st.integers(1, 4))):
            doc[draw(st.sampled_from([*sorted(base), "x", "pipeline", "settings"]))] = draw(
                JSON_LIKE
            )
        data = doc
    try:
        text = yaml.safe_dump(data, default_flow_style=draw(st.booleans()), allow_unicode=True)
    except (ValueError, yaml.YAMLError):  # integers too long for str()
        text = "x: 1\n"
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        insert = draw(st.one_of(TEXT, TAGS.map(lambda t: t + " "), st.just("&a "), st.just("*a")))
        text = text[:at] + insert + text[at:]
    return text


PERSONALITY = {
    "schema": 1,
    "id": "fuzz",
    "name": "Fuzz",
    "conditioning": "You are fuzzed.",
    "sampling": {"temperature": 0.5, "max_tokens": 16},
    "settings": {"flag": {"type": "boolean", "default": True}},
    "pipeline": [{"generate": {"id": "a"}}, {"reply": {"text": "{{ a }}"}}],
}


def yaml_documents(base: dict[str, Any] = PERSONALITY) -> st.SearchStrategy[str]:
    """Every kind of hostile YAML text."""
    return st.one_of(
        TEXT,
        st.text(max_size=200),
        dumped(),
        dumped(base),
        alias_bombs(tuple(base)),
        deep_nesting(),
        tagged(),
        NUMBER_TEXTS.map(lambda n: f"schema: 1\nid: n\nname: N\nsampling: {{max_tokens: {n}}}\n"),
        NUMBER_TEXTS.map(lambda n: f"{n}: x\nid: {n}\n"),
    )


# -- SillyTavern cards ---------------------------------------------------------------------------
CARD_FIELDS = (
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "alternate_greetings",
    "tags",
    "creator",
    "character_version",
    "nickname",
    "character_book",
    "extensions",
    "char_name",
)


@st.composite
def card_objects(draw: st.DrawFn) -> Any:
    fields = draw(
        st.dictionaries(
            st.sampled_from(CARD_FIELDS) | st.text(max_size=8),
            st.one_of(st.text(max_size=200), TEXT, JSON_LIKE),
            max_size=10,
        )
    )
    shape = draw(st.sampled_from(["v1", "v2", "v3", "other", "raw"]))
    if shape == "v1":
        return fields
    if shape in ("v2", "v3"):
        return {"spec": f"chara_card_{shape}", "spec_version": "2.0", "data": fields}
    if shape == "other":
        return {"spec": draw(JSON_LIKE), "data": draw(JSON_LIKE)}
    return draw(JSON_LIKE)


def _json_bytes(card: Any) -> bytes:
    try:
        return json.dumps(card, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except ValueError:  # an integer too long for str()
        return b"{}"


@st.composite
def card_json(draw: st.DrawFn) -> bytes:
    """A card's JSON text, maybe damaged: deep nesting, huge numbers, NaN, cut, bad bytes."""
    raw = _json_bytes(draw(card_objects()))
    damage = draw(
        st.sampled_from(["none", "deep", "number", "constant", "cut", "bytes", "bom", "dup"])
    )
    if damage == "deep":
        depth = draw(st.integers(1, 200_000))
        raw = b'{"name": "a", "description": ' + b"[" * depth + b"]" * depth + b"}"
    elif damage == "number":
        digits = draw(NUMBER_TEXTS).encode()
        raw = b'{"name": "a", "first_mes": "hi", "extensions": {"n": ' + digits + b"}}"
    elif damage == "constant":
        raw = (
            b'{"name": "a", "first_mes": "hi", "x": '
            + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400"]))
            + b"}"
        )
    elif damage == "cut" and raw:
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif damage == "bytes":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=8)) + raw[at:]
    elif damage == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif damage == "dup":
        raw = b'{"name": "a", "name": "b", "first_mes": "x", "first_mes": 3}'
    return raw


def _chunk(kind: bytes, payload: bytes, crc_ok: bool = True) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc ^ (not crc_ok))


IHDR = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)


@st.composite
def card_pngs(draw: st.DrawFn) -> bytes:
    """A PNG card: valid chunks around a chara/ccv3 text chunk holding (maybe bad) base64."""
    payload = draw(card_json())
    kind = draw(st.sampled_from(["good", "bad_base64", "binary", "padding", "not_json"]))
    if kind == "good":
        text = base64.b64encode(payload)
    elif kind == "bad_base64":
        text = draw(st.binary(max_size=64))
    elif kind == "binary":
        text = base64.b64encode(draw(st.binary(max_size=64)))
    elif kind == "padding":
        text = base64.b64encode(payload).rstrip(b"=") + b"=" * draw(st.integers(0, 5))
    else:
        text = draw(TEXT).encode("utf-8", "surrogatepass")
    keyword = draw(st.sampled_from([b"chara", b"ccv3", b"Comment", b"chara\x00x", b""]))
    chunks = [
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", IHDR),
        _chunk(
            b"tEXt",
            keyword + b"\x00" + text,
        ),
        _chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\x00")),
        _chunk(b"IEND", b""),
    ]
    blob = b"".join(chunks)
    damage = draw(st.sampled_from(["none", "none", "cut", "crc", "length", "flip"]))
    if damage == "cut":
        blob = blob[: draw(st.integers(0, len(blob)))]
    elif damage == "crc":
        blob = b"".join(
            [*chunks[:2], _chunk(b"tEXt", keyword + b"\x00" + text, False), *chunks[3:]]
        )
    elif damage == "length":
        at = len(chunks[0]) + len(chunks[1])
        blob = blob[:at] + struct.pack(">I", draw(st.integers(0, 2**32 - 1))) + blob[at + 4 :]
    elif damage == "flip" and blob:
        at = draw(st.integers(0, len(blob) - 1))
        blob = blob[:at] + bytes([blob[at] ^ draw(st.integers(1, 255))]) + blob[at + 1 :]
    return blob


# -- LoLLMs configs ------------------------------------------------------------------------------
LOLLMS_CONFIG = {
    "name": "Fuzzy",
    "author": "someone",
    "version": "1.0.0",
    "category": "fun",
    "language": "english",
    "personality_description": "A fuzzed personality.",
    "personality_conditioning": "!@>system: Be fuzzy.",
    "welcome_message": "Hi!",
    "user_message_prefix": "!@>user:",
    "ai_message_prefix": "!@>fuzzy:",
    "link_text": "\n",
    "anti_prompts": ["!@>"],
    "model_temperature": 0.6,
    "model_n_predicts": 1024,
    "model_top_k": 50,
    "model_top_p": 0.9,
    "model_repeat_penalty": 1.1,
    "model_repeat_last_n": 40,
    "prompts_list": ["Tell me a joke."],
    "commands": [{"name": "x", "value": "y"}],
    "dependencies": ["requests"],
}


def lollms_configs() -> st.SearchStrategy[str]:
    return yaml_documents(LOLLMS_CONFIG)


# -- templates -----------------------------------------------------------------------------------
TEMPLATE_TOKENS = [
    *[
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        "|",
        "~",
        "+",
        "-",
        "*",
        "**",
        "/",
        "//",
        "%",
        ".",
        "=",
        "==",
        "!=",
        "<",
        ">",
        "'",
        '"',
    ],
    " ",
    "\n",
    "message",
    "history",
    "settings",
    "settings.flag",
    "settings['x']",
    "personality",
    "now",
    "a",
    "loop.index",
    "x",
    "1",
    "0",
    "-1",
    "99999999",
    "10**100",
    "1e308",
    "'a'",
    "'%s'",
    "'%099999999d'",
    "'{0:>99999999}'",
    "'{0.__class__}'",
    "'x' * 999999",
    "range(100000)",
    "range(10)",
    "[1, 2, 3]",
    "{'k': 1}",
    "upper",
    "join",
    "join(',')",
    "sort",
    "map('upper')",
    "map(attribute='real')",
    "groupby('real')",
    "selectattr('real')",
    "unique",
    "wordwrap(1)",
    "center(999999)",
    "indent(99999)",
    "format",
    "replace('a', 'bb')",
    "batch(3)",
    "slice(2)",
    "sum",
    "length",
    "list",
    "tojson",
    "pprint",
    "urlize",
    "striptags",
    "truncate(5)",
    "nosuchfilter",
    "is",
    "not",
    "defined",
    "odd",
    "nosuchtest",
    "in",
    "and",
    "or",
    "if",
    "else",
    "elif",
    "endif",
    "for",
    "endfor",
    "set",
    "endset",
    "macro",
    "endmacro",
    "call",
    "caller()",
    "filter",
    "endfilter",
    "raw",
    "endraw",
    "include 'x'",
    "import 'x' as y",
    "extends 'x'",
    "block b",
    "endblock",
    "namespace(n=0)",
    "cycler(1, 2)",
    "joiner()",
    "lipsum()",
    "dict(a=1)",
    "__class__",
    "__mro__",
    "__subclasses__()",
    "__globals__",
    "__init__",
    "mro()",
    "self",
    "config",
    "request",
    "true",
    "none",
    "'é😀'",
    "\u202e",
]


@st.composite
def templates(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=80))
    return "".join(draw(st.lists(st.sampled_from(TEMPLATE_TOKENS), max_size=25)))


@st.composite
def expressions(draw: st.DrawFn) -> str:
    tokens = [t for t in TEMPLATE_TOKENS if t not in ("{{", "}}", "{%", "%}", "{#", "#}")]
    return " ".join(draw(st.lists(st.sampled_from(tokens), min_size=1, max_size=15)))
