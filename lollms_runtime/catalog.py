"""Finding personalities: registered by plugins, in folders given on the command line, or in
``LOLLMS_PERSONALITIES_PATH``. Listing reads only the identity keys, so it stays fast."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .contracts import StepKind
from .errors import LollmsError, PersonalityError, Problem
from .loader import PERSONALITY_FILE, default_host, load_personality
from .personality import Personality
from .plugins import PluginHost
from .providers import install_command, plugins_restricted_note
from .yamldoc import MAX_TEXT_CHARS, check_graph, compose, construct_scalar

try:
    from yaml import CSafeLoader as _FastLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _FastLoader  # type: ignore[assignment]

PATH_VARIABLE = "LOLLMS_PERSONALITIES_PATH"


@dataclass(frozen=True)
class Entry:
    """What `lollms list` shows about one personality file (not yet validated)."""

    id: str
    name: str
    version: str
    category: str
    description: str
    path: Path
    origin: str
    error: str = ""
    # Step kinds the pipeline uses that no loaded plugin provides but a known distribution does
    # (its ``dependencies:``, or providers.KNOWN_PROVIDERS): the personality is unavailable until
    # that plugin is installed (``install`` says how).
    missing_kinds: tuple[str, ...] = ()
    install: str = ""

    @property
    def unavailable(self) -> str:
        """Why the personality cannot be used here ("" when it can), with the command to fix it."""
        if not self.missing_kinds:
            return ""
        kinds = ", ".join(f"'{k}'" for k in self.missing_kinds)
        plural = "s" if len(self.missing_kinds) > 1 else ""
        return (
            f"needs the step kind{plural} {kinds}, which no loaded plugin provides"
            + (f": {self.install}" if self.install else "")
            + plugins_restricted_note()
        )


def _folders_in(directory: Path) -> Iterator[Path]:
    """Personality files in ``directory``: itself, its children and grandchildren (categories)."""
    if (directory / PERSONALITY_FILE).is_file():
        yield directory / PERSONALITY_FILE
        return
    try:
        children = sorted(p for p in directory.iterdir() if p.is_dir())
    except OSError:
        return
    for child in children:
        if (child / PERSONALITY_FILE).is_file():
            yield child / PERSONALITY_FILE
            continue
        try:
            yield from sorted(child.glob(f"*/{PERSONALITY_FILE}"))
        except OSError:
            continue


IDENTITY_KEYS = frozenset({"id", "name", "version", "category", "description"})
# Also read when listing: which step kinds the pipelines use and which plugins they declare, so
# that a personality whose plugin is gone is listed as unavailable rather than offered.
USE_KEYS = frozenset({"pipeline", "pipelines", "dependencies"})


def _identity(text: str, file: str) -> Any:
    """The identity keys of a YAML document, without building the rest of it.

    The C parser still reads the whole file (so syntax and the loader's bounds are judged exactly
    as by the loader), but only the top-level identity values become Python objects, and only
    when they are plain scalars: listing hundreds of personalities then costs little more than
    reading them, and `name: *alias` naming a huge list cannot make listing expand it.
    """
    if len(text) > MAX_TEXT_CHARS:
        compose(text, file)  # raises the loader's own message
    loader = _FastLoader(text)
    try:
        root = loader.get_single_node()
        if not isinstance(root, yaml.MappingNode):
            return None
        problems = check_graph(root, file)
        if problems:
            raise PersonalityError(problems)
        data: dict[str, Any] = {}
        # Merge keys (`<<`) may bring identity keys in; the graph is checked: flattening is bounded.
        loader.flatten_mapping(root)
        for key_node, value_node in root.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str":
                if key_node.value in IDENTITY_KEYS and isinstance(value_node, yaml.ScalarNode):
                    data[key_node.value] = construct_scalar(value_node, file, (), loader)
                elif key_node.value in USE_KEYS:  # the graph is checked: walking it is bounded
                    data[key_node.value] = _skeleton(value_node)
    finally:
        loader.dispose()
    return data


def _skeleton(node: yaml.Node, depth: int = 0) -> Any:
    """Mappings, lists and the raw text of scalars: enough to see which step kinds a pipeline
    uses, at a third of the cost of building it (listing stays fast)."""
    if isinstance(node, yaml.ScalarNode):
        return None if node.tag == "tag:yaml.org,2002:null" else node.value
    if depth > 64:  # deeper than any real pipeline: not looked into
        return None
    if isinstance(node, yaml.SequenceNode):
        return [_skeleton(item, depth + 1) for item in node.value]
    if isinstance(node, yaml.MappingNode):
        return {
            k.value: _skeleton(v, depth + 1)
            for k, v in node.value
            if isinstance(k, yaml.ScalarNode)
        }
    return None


def _summary(path: Path, origin: str, kinds: Mapping[str, StepKind]) -> Entry:
    try:
        if path.stat().st_size > 4 * MAX_TEXT_CHARS:  # UTF-8: at most 4 bytes a character
            raise PersonalityError(
                [Problem(str(path), 1, 1, "", "the file is too large for a personality")]
            )
        data: Any = _identity(path.read_text(encoding="utf-8"), str(path))
    except PersonalityError as exc:
        problem = exc.problems[0]
        where = f"{problem.line}:{problem.col}: " + (f"{problem.path}: " if problem.path else "")
        hint = f" (hint: {problem.hint})" if problem.hint else ""
        return Entry("", "", "", "", "", path, origin, f"{where}{problem.message}{hint}")
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Entry("", "", "", "", "", path, origin, f"unreadable: {first}")
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        return Entry("", "", "", "", "", path, origin, "no 'id' key: run `lollms validate` on it")
    missing = sorted(missing_kinds(data, kinds))
    install = install_command(missing, data.get("dependencies")) if missing else ""
    if not install:
        # No known plugin provides it: a typo, most likely; loading it says so (did you mean...).
        missing = []
    return Entry(
        id=data["id"],
        name=str(data.get("name", data["id"])),
        version=str(data.get("version", "")),
        category=str(data.get("category", "")),
        description=str(data.get("description", "")),
        path=path,
        origin=origin,
        missing_kinds=tuple(missing),
        install=install,
    )


def missing_kinds(data: Mapping[str, Any], kinds: Mapping[str, StepKind]) -> set[str]:
    """The step kinds ``data``'s pipelines use that ``kinds`` lacks (nested steps followed as
    each known kind declares them; what an unknown kind holds is not looked into)."""
    missing: set[str] = set()

    def steps(items: Any) -> None:
        for item in items if isinstance(items, list) else ():
            if isinstance(item, str):
                name, body = item, None
            elif isinstance(item, dict) and len(item) == 1:
                ((name, body),) = item.items()
            else:
                continue
            if not isinstance(name, str):
                continue
            kind = kinds.get(name)
            if kind is None:
                missing.add(name)
            elif isinstance(body, dict):
                for key in kind.nested:
                    nested(body.get(key))

    def nested(value: Any) -> None:  # steps, name -> steps, or branches (as the loader reads them)
        if isinstance(value, dict):
            for inner in value.values():
                nested(inner)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and not (len(item) == 1 and _looks_like_step(item)):
                    for inner in item.values():  # a branch: its nested keys hold steps
                        if isinstance(inner, list):
                            steps(inner)
                else:
                    steps([item])

    steps(data.get("pipeline"))
    for sub in (
        (data.get("pipelines") or {}).values() if isinstance(data.get("pipelines"), dict) else ()
    ):
        steps(sub)
    return missing


def _looks_like_step(item: Mapping[str, Any]) -> bool:
    """A one-key mapping whose value is options (or nothing): a step, known kind or not."""
    ((_name, body),) = item.items()
    return body is None or isinstance(body, dict)


class Catalog:
    """Every personality visible to this process; the first source of an id wins, later ones conflict."""

    def __init__(
        self, host: PluginHost | None = None, directories: Iterable[str | Path] = ()
    ) -> None:
        self.host = host or default_host()
        self.entries: list[Entry] = []
        self.conflicts: list[str] = []
        self.broken: list[Entry] = []
        # Personalities whose pipeline needs a plugin that is not loaded: listed, never offered.
        self.unavailable: list[Entry] = []
        self.missing: list[str] = []  # folders given that do not exist (a typo, most likely)
        self._loaded: dict[str, Personality] = {}
        by_id: dict[str, Entry] = {}
        unavailable: dict[str, Entry] = {}
        kinds = self.host.step_kinds
        for path, origin in self._sources(directories):
            entry = _summary(path, origin, kinds)
            if entry.error:
                self.broken.append(entry)
                continue
            if entry.missing_kinds:
                if entry.id not in by_id:
                    unavailable.setdefault(entry.id, entry)
                continue
            if entry.id in by_id:
                first = by_id[entry.id]
                if first.path.resolve() != entry.path.resolve():
                    self.conflicts.append(
                        f"personality id '{entry.id}' is defined twice: {first.path} ({first.origin}) "
                        f"and {entry.path} ({entry.origin}); the first is used — rename one id or "
                        f"remove one source"
                    )
                continue
            by_id[entry.id] = entry
            self.entries.append(entry)
        self.entries.sort(key=lambda e: (e.category.lower(), e.name.lower()))
        self.unavailable = sorted(
            (e for e in unavailable.values() if e.id not in by_id), key=lambda e: e.id
        )
        self._by_id = by_id

    def _sources(self, directories: Iterable[str | Path]) -> Iterator[tuple[Path, str]]:
        for directory in directories:
            if not Path(directory).is_dir():
                self.missing.append(f"--personalities {directory}: no such folder")
            for path in _folders_in(Path(directory)):
                yield path, f"--personalities {directory}"
        for directory in filter(None, os.environ.get(PATH_VARIABLE, "").split(os.pathsep)):
            if not Path(directory).is_dir():
                self.missing.append(f"{PATH_VARIABLE}: no such folder {directory}")
            for path in _folders_in(Path(directory)):
                yield path, f"{PATH_VARIABLE}"
        for path, plugin in self.host.personality_sources:
            if path.is_dir():
                for found in _folders_in(path):
                    yield found, f"plugin {plugin}"
            else:
                yield path, f"plugin {plugin}"

    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def entry(self, personality_id: str) -> Entry:
        try:
            return self._by_id[personality_id]
        except KeyError:
            import difflib

            gone = next((e for e in self.unavailable if e.id == personality_id), None)
            if gone is not None:
                raise LollmsError(
                    f"personality '{personality_id}' ({gone.path}) {gone.unavailable}"
                ) from None

            close = difflib.get_close_matches(personality_id, list(self._by_id), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else " See `lollms list`."
            raise LollmsError(f"no personality with id '{personality_id}'.{hint}") from None

    def get(self, personality_id: str) -> Personality:
        """The validated personality (loaded once per catalog)."""
        if personality_id not in self._loaded:
            entry = self.entry(personality_id)
            self._loaded[personality_id] = load_personality(
                entry.path, self.host, origin=entry.origin
            )
        return self._loaded[personality_id]

    def resolve(self, id_or_path: str) -> Personality:
        """A personality by id, or by the path of its file or folder."""
        if id_or_path in self._by_id:
            return self.get(id_or_path)
        candidate = Path(id_or_path)
        if candidate.exists():
            return load_personality(candidate, self.host, origin="path")
        return self.get(id_or_path)
