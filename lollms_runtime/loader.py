"""personality.yaml -> validated :class:`Personality`, with errors that point at file:line:col."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends.base import Prefixes, Sampling
from .contracts import StepKind
from .errors import PersonalityError, Problem
from .paths import PATH_HINT, PathRefused, confined, named_paths, path_fields
from .personality import Command, Personality, Setting
from .plugins import PluginHost
from .schema import SCHEMA_VERSION, base_schema, build_schema
from .yamldoc import Document, Path_, parse_yaml

if TYPE_CHECKING:  # jsonschema costs ~75 ms to import: `lollms list` never needs it
    import jsonschema
    from jsonschema.exceptions import ValidationError

PERSONALITY_FILE = "personality.yaml"

# Keys of LoLLMs config.yaml files (and common guesses) -> where that setting lives in this format.
KNOWN_ALIASES = {
    "personality_conditioning": "conditioning",
    "system_prompt": "conditioning",
    "welcome_message": "welcome",
    "personality_description": "description",
    "user_message_prefix": "user_prefix",
    "ai_message_prefix": "ai_prefix",
    "prompts_list": "examples",
    "anti_prompts": "sampling.stop",
    "model_temperature": "sampling.temperature",
    "model_n_predicts": "sampling.max_tokens",
    "model_top_k": "sampling.top_k",
    "model_top_p": "sampling.top_p",
    "model_repeat_penalty": "sampling.repetition_penalty",
    "model_repeat_last_n": "sampling.repetition_context_size",
    "temperature": "sampling.temperature",
    "max_tokens": "sampling.max_tokens",
    "n_predict": "sampling.max_tokens",
    "stop": "sampling.stop",
    "steps": "pipeline",
    "workflow": "pipeline",
}

LOLLMS_MARKERS = frozenset(
    {
        "personality_conditioning",
        "personality_description",
        "welcome_message",
        "user_message_prefix",
        "ai_message_prefix",
        "model_temperature",
    }
)

# Migrations from an older format version to the next one: version -> function(data) -> data.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

_JSON_TYPES = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "array": "a list",
    "object": "a mapping",
    "null": "nothing (null)",
}


def _type_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@lru_cache(maxsize=8)
def _validator_for(host: PluginHost) -> jsonschema.Draft202012Validator:
    import jsonschema

    schema = build_schema(host.step_kinds, host.postprocessors)
    schema["$defs"]["step"]["x-kind"] = "step"
    schema["$defs"]["operation"]["x-kind"] = "operation"
    return jsonschema.Draft202012Validator(schema)


_default_host: PluginHost | None = None


def default_host() -> PluginHost:
    """The process-wide plugin host (built on first use, never at import time)."""
    global _default_host
    if _default_host is None:
        _default_host = PluginHost()
    return _default_host


def load_personality(
    path: str | Path, host: PluginHost | None = None, *, origin: str = ""
) -> Personality:
    """Load and validate a personality file (or a folder holding ``personality.yaml``)."""
    host = host or default_host()
    file = Path(path)
    if file.is_dir():
        file = file / PERSONALITY_FILE
    shown = str(path if Path(path).is_file() else file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PersonalityError(
            [Problem(shown, 1, 1, "", "file not found", "give a personality.yaml or its folder")]
        ) from None
    except UnicodeDecodeError as exc:
        raise PersonalityError(
            [Problem(shown, 1, 1, "", f"not UTF-8 text ({exc.reason})", "save it as UTF-8")]
        ) from None
    except OSError as exc:
        raise PersonalityError([Problem(shown, 1, 1, "", f"cannot read: {exc.strerror}")]) from None
    doc = parse_yaml(text, shown)
    problems = validate_document(doc, host)
    if problems:
        raise PersonalityError(problems)
    return build_personality(doc.data, file.resolve(), origin=origin)


def validate_document(doc: Document, host: PluginHost) -> list[Problem]:
    """Every problem in a parsed document, most relevant first (empty when valid)."""
    data = doc.data
    if not isinstance(data, dict):
        return [
            doc.problem(
                (),
                f"expected a mapping of keys, got {_type_of(data)}",
                "a personality file starts with keys like `schema: 1` and `id: my_bot`",
            )
        ]
    version = data.get("schema")
    if isinstance(version, int) and not isinstance(version, bool):
        if version > SCHEMA_VERSION:
            return [
                doc.problem(
                    ("schema",),
                    f"written for format version {version}; this "
                    f"lollms-runtime reads versions up to {SCHEMA_VERSION}",
                    "upgrade lollms-runtime: pip install -U lollms-runtime",
                )
            ]
        while version < SCHEMA_VERSION and version in MIGRATIONS:
            data = MIGRATIONS[version](data)
            version += 1
            data["schema"] = version
        doc.data = data
    lollms_keys = [k for k in data if k in LOLLMS_MARKERS]
    if lollms_keys and "schema" not in data:
        # One actionable message rather than a dozen unknown keys.
        return [
            doc.problem(
                (lollms_keys[0],),
                "this is a LoLLMs personality config, not a lollms-runtime personality",
                f"convert it: lollms import '{Path(doc.file).parent}'",
                key=True,
            )
        ]
    from jsonschema.exceptions import best_match, relevance

    _normalize(data, host.step_kinds)
    errors = list(_validator_for(host).iter_errors(data))
    problems: list[Problem] = []
    if not errors:
        from .checks import check_pipeline  # templates: syntax, names and their order

        return (
            _check_paths(doc, data)
            + _check_settings(doc, data)
            + _check_lore(doc, data)
            + check_pipeline(doc, host)
        )

    def rank(e: ValidationError) -> tuple[Any, ...]:
        # jsonschema's relevance, except that among equally relevant errors the one written
        # first in the file wins (its own tie-break prefers the *last* sibling).
        key: tuple[Any, ...] = relevance(e)  # type: ignore[assignment]
        line, col = doc.mark(tuple(e.absolute_path))
        return (key[0], *key[2:], -line, -col)  # key[1] is the path: the jsonschema tie-break

    first = best_match([max(errors, key=rank)])
    ordered = [
        first,
        *sorted(
            (e for e in errors if e is not first),
            key=lambda e: (doc.mark(tuple(e.absolute_path)), relevance(e)),
        ),
    ]
    misshapen = [
        tuple(e.absolute_path)
        for e in errors
        if e.validator in ("minProperties", "maxProperties")
        and isinstance(e.schema, Mapping)
        and e.schema.get("x-kind")
    ]
    seen: set[str] = set()
    for error in ordered:
        where = tuple(error.absolute_path)
        if any(len(where) > len(p) and where[: len(p)] == p for p in misshapen):
            continue  # inside a step that has the wrong shape: that one message is enough
        for problem in _problems_for(error, doc, host):
            text = str(problem)
            if text not in seen:
                seen.add(text)
                problems.append(problem)
    return problems


def _check_paths(doc: Document, data: Mapping[str, Any]) -> list[Problem]:
    """Every path the personality names stays inside its folder (symbolic links followed)."""
    folder = Path(doc.file).parent
    problems = []
    for where, value in named_paths(data, path_fields(base_schema())):
        try:
            confined(folder, value)
        except PathRefused as exc:
            problems.append(doc.problem(where, f"{exc}; it must stay inside its folder", PATH_HINT))
    return problems


def _check_lore(doc: Document, data: Mapping[str, Any]) -> list[Problem]:
    """What the schema cannot say of a lorebook: every pattern compiles (lollms_runtime.knowledge)."""
    if not data.get("lore"):
        return []
    from .knowledge.lore import check_lore

    return [doc.problem(where, message, hint) for where, message, hint in check_lore(data["lore"])]


def _check_settings(doc: Document, data: Mapping[str, Any]) -> list[Problem]:
    """What the schema cannot say: a setting's default lies within its own bounds and choices."""
    problems: list[Problem] = []
    for name, spec in (data.get("settings") or {}).items():
        default = spec["default"]
        where = ("settings", name, "default")
        if "enum" in spec and default not in spec["enum"]:
            choices = ", ".join(map(str, spec["enum"]))
            problems.append(
                doc.problem(where, f"{_short(default)} is not one of: {choices}", _DEFAULT_HINT)
            )
        number = isinstance(default, int | float) and not isinstance(default, bool)
        low, high = spec.get("minimum"), spec.get("maximum")
        if number and low is not None and default < low:
            message = f"{default} is below the minimum of {low}"
            problems.append(doc.problem(where, message, _DEFAULT_HINT))
        if number and high is not None and default > high:
            message = f"{default} is above the maximum of {high}"
            problems.append(doc.problem(where, message, _DEFAULT_HINT))
    return problems


_DEFAULT_HINT = "the default must be a value the setting allows"


def _normalize(data: dict[str, Any], kinds: Mapping[str, StepKind]) -> None:
    """Accept the short forms: ``- reply`` and ``- reply:`` (no options), and ops written as names.

    Only the keys a kind declares as ``nested`` hold steps: a list of strings elsewhere (``stop``,
    ``choose``, ``images``) is data and stays as written.
    """

    def step(items: list[Any], i: int) -> None:
        if isinstance(items[i], str):
            items[i] = {items[i]: {}}
        item = items[i]
        if not (isinstance(item, dict) and len(item) == 1):
            return
        ((kind, body),) = item.items()
        if body is None:
            item[kind] = body = {}
        if not isinstance(body, dict):
            return
        spec = kinds.get(kind)
        ops = body.get(spec.operations) if spec and spec.operations else None
        if spec and isinstance(ops, list):
            body[spec.operations] = [{op: None} if isinstance(op, str) else op for op in ops]
        for key in spec.nested if spec else ():
            if key in body:
                nested(body[key])

    def steps(items: Any) -> None:
        if isinstance(items, list):
            for i in range(len(items)):
                step(items, i)

    def nested(value: Any) -> None:
        # A step list, a mapping of names to step lists (cases), or a list of branches (elif).
        if isinstance(value, dict):
            for v in value.values():
                nested(v)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                is_step = isinstance(item, str) or (
                    isinstance(item, dict) and len(item) == 1 and next(iter(item)) in kinds
                )
                if is_step:
                    step(value, i)
                elif isinstance(item, dict):
                    for v in item.values():
                        nested(v)

    steps(data.get("pipeline"))
    if isinstance(data.get("pipelines"), dict):
        for sub in data["pipelines"].values():
            steps(sub)


def _hint(schema: Mapping[str, Any]) -> str:
    return str(schema.get("description", ""))


def _problems_for(error: ValidationError, doc: Document, host: PluginHost) -> Iterable[Problem]:
    path: Path_ = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    kind = error.validator
    value: Any = error.instance
    rule: Any = error.validator_value
    context: list[ValidationError] = list(error.context or ())

    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = list(schema.get("properties", {}))
        if schema.get("x-kind") in ("step", "operation") and len(value) > 1:
            return  # reported once by maxProperties, with every key it found
        for key in value:
            if key in allowed:
                continue
            yield _unknown_key(doc, (*path, key), key, allowed, schema.get("x-kind"), host)
        return
    if kind in ("minProperties", "maxProperties") and schema.get("x-kind") in ("step", "operation"):
        found = ", ".join(value) if isinstance(value, dict) else ""
        if schema.get("x-kind") == "operation":
            yield doc.problem(
                path,
                f"an operation must have exactly one key, its name (found: {found or 'none'})",
                'write "- truncate: 200" or "- strip"',
            )
            return
        yield doc.problem(
            path,
            f"a step must have exactly one key, its kind (found: {found or 'none'})",
            'put the options under the kind, e.g. "- generate: {id: answer}"',
        )
        return
    if kind == "required":
        missing = [name for name in rule if name not in value]
        for name in missing:
            prop = schema.get("properties", {}).get(name, {})
            yield doc.problem(path, f"missing required key '{name}'", _hint(prop), key=True)
        return
    if kind == "type":
        expected = rule
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_JSON_TYPES.get(n, n) for n in names)
        hint = _hint(schema)
        if "string" in names and isinstance(value, int | float) and not isinstance(value, bool):
            hint = f'quote it: "{value}"' + (f" ({hint})" if hint else "")
        if "boolean" in names and path in doc.yaml11_booleans:
            hint = f"write true or false ('{value}' is read as text, as in YAML 1.2)"
        got = _type_of(value)
        shown = (
            f" ({_short(value)})"
            if not isinstance(value, dict | list) and value is not None
            else ""
        )
        yield doc.problem(path, f"expected {wanted}, got {got}{shown}", hint)
        return
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {
            "minimum": "below the minimum of",
            "maximum": "above the maximum of",
            "exclusiveMinimum": "not above",
            "exclusiveMaximum": "not below",
        }
        yield doc.problem(path, f"{value} is {words[kind]} {rule}", _hint(schema))
        return
    if kind == "enum":
        options = [str(o) for o in rule]
        close = difflib.get_close_matches(str(value), options, n=1)
        hint = f"did you mean '{close[0]}'?" if close else _hint(schema)
        yield doc.problem(path, f"{_short(value)} is not one of: {', '.join(options)}", hint)
        return
    if kind == "pattern":
        what = "id" if (path and path[-1] in ("id", "schema")) or path == ("id",) else "value"
        yield doc.problem(path, f"{_short(value)} is not a valid {what}", _hint(schema))
        return
    if kind in ("anyOf", "oneOf") and isinstance(value, dict):
        shapes: list[list[str]] = [b.get("required") or [] for b in rule if isinstance(b, dict)]
        if shapes and all(shapes):
            alternatives = ", ".join(" with ".join(f"'{k}'" for k in shape) for shape in shapes)
            keys = sorted({shape[0] for shape in shapes})
            if all(e.validator == "required" for e in context) and context:
                yield doc.problem(path, f"needs one of: {alternatives}", _hint(schema), key=True)
                return
            if not any(e.path for e in context):
                yield doc.problem(
                    path, f"use only one of: {', '.join(keys)}", _hint(schema), key=True
                )
                return
    if kind in ("anyOf", "oneOf") and context:
        from jsonschema.exceptions import best_match

        deepest = best_match(context)
        yield from _problems_for(deepest, doc, host)
        return
    if kind in ("minLength", "minItems") and not value:
        yield doc.problem(path, "must not be empty", _hint(schema))
        return
    yield doc.problem(path, error.message, _hint(schema))


def _unknown_key(
    doc: Document, path: Path_, key: str, allowed: list[str], where: Any, host: PluginHost
) -> Problem:
    if where == "step":
        kinds = sorted(host.step_kinds)
        close = difflib.get_close_matches(key, kinds, n=1)
        hint = (
            f"did you mean '{close[0]}'? " if close else ""
        ) + f"Known step kinds: {', '.join(kinds)}"
        if not close:
            from .providers import install_command, plugins_restricted_note  # its plugin, if known

            data = doc.data if isinstance(doc.data, dict) else {}
            install = install_command([key], data.get("dependencies"))
            if install:
                hint += f" (it needs a plugin: {install}{plugins_restricted_note()})"
            else:
                hint += " (a plugin may provide it: see `lollms plugins`)"
        return doc.problem(path, f"unknown step kind '{key}'", hint, key=True)
    if where == "operation":
        ops = sorted(host.postprocessors)
        close = difflib.get_close_matches(key, ops, n=1)
        hint = (
            f"did you mean '{close[0]}'? " if close else ""
        ) + f"Known operations: {', '.join(ops)}"
        return doc.problem(path, f"unknown operation '{key}'", hint, key=True)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
    if close:
        hint = f"did you mean '{close[0]}'?"
    elif key in KNOWN_ALIASES:
        hint = f"in lollms-runtime this is '{KNOWN_ALIASES[key]}'"
    else:
        hint = f"allowed keys here: {', '.join(sorted(allowed))}" if allowed else ""
    return doc.problem(path, f"unknown key '{key}'", hint, key=True)


def build_personality(data: Mapping[str, Any], source: Path, *, origin: str = "") -> Personality:
    """The typed object for an already validated document."""
    sampling_data = dict(data.get("sampling") or {})
    if "n_predict" in sampling_data:
        sampling_data.setdefault("max_tokens", sampling_data.pop("n_predict"))
        sampling_data.pop("n_predict", None)
    if "logit_bias" in sampling_data:
        sampling_data["logit_bias"] = {
            int(k): float(v) for k, v in sampling_data["logit_bias"].items()
        }
    if "stop" in sampling_data:
        sampling_data["stop"] = tuple(sampling_data["stop"])
    sampling = Sampling(**sampling_data)

    prefixes = None
    if "user_prefix" in data or "ai_prefix" in data:
        prefixes = Prefixes(
            user_prefix=data.get("user_prefix", Prefixes.user_prefix),
            ai_prefix=data.get("ai_prefix", Prefixes.ai_prefix),
            link_text=data.get("link_text", Prefixes.link_text),
        )
    settings = {
        name: Setting(
            name=name,
            type=spec["type"],
            default=spec["default"],
            title=spec.get("title", ""),
            description=spec.get("description", ""),
            enum=tuple(spec["enum"]) if "enum" in spec else None,
            minimum=spec.get("minimum"),
            maximum=spec.get("maximum"),
            step=spec.get("step"),
            multiline=bool(spec.get("multiline", False)),
            max_length=spec.get("maxLength"),
        )
        for name, spec in (data.get("settings") or {}).items()
    }
    welcome = data.get("welcome", ())
    avatar = data.get("avatar")
    return Personality(
        id=data["id"],
        name=data["name"],
        source=source,
        version=str(data.get("version", "0.1.0")),
        author=data.get("author", ""),
        category=data.get("category", ""),
        language=data.get("language", ""),
        description=data.get("description", ""),
        avatar=_avatar(source.parent, avatar),
        license=data.get("license", ""),
        tags=tuple(data.get("tags", ())),
        conditioning=data.get("conditioning", ""),
        welcome=(welcome,) if isinstance(welcome, str) else tuple(welcome),
        examples=tuple(data.get("examples", ())),
        disclaimer=data.get("disclaimer", ""),
        help=data.get("help", ""),
        prefixes=prefixes,
        recommended_model=data.get("recommended_model", ""),
        dependencies=tuple(data.get("dependencies", ())),
        commands=tuple(Command(**c) for c in data.get("commands", ())),
        sampling=sampling,
        settings=settings,
        pipeline=tuple(data.get("pipeline", ())),
        pipelines={k: tuple(v) for k, v in (data.get("pipelines") or {}).items()},
        tests=tuple(data.get("tests", ())),
        origin=origin,
        raw=data,
    )


def _avatar(folder: Path, value: Any) -> Path | None:
    """The avatar's resolved path inside the personality's folder (the app shows it if it exists)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        path = confined(folder, value)
    except PathRefused:
        return None  # validation reported it; a document built without validation gets none
    return path
