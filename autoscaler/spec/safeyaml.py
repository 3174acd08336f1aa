"""Bounded YAML loading for spec files, which anyone able to edit a ConfigMap may write.

PyYAML's `safe_load` builds no arbitrary objects but has no other limits: a "billion laughs"
document (anchors of anchors) expands to billions of nodes as soon as anything walks it, a
5,000-deep `[[[...]]]` overflows the recursive composer (RecursionError), a 5,000-digit integer
trips CPython's int-string limit (ValueError), and duplicate keys silently keep the last value.
Here every limit is checked on PyYAML's *event stream* (an iterative parser, no recursion, no
object construction) before a single node is composed, and the constructor rejects duplicate
keys. Every failure is a `SpecError` naming the source and, where known, line and column.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

MAX_SPEC_BYTES = 1 << 20  # 1 MiB: a ConfigMap's own size limit (etcd request limit is ~1.5 MiB)
MAX_DEPTH = 32  # a ServingAutoscaler nests 5 levels; 32 leaves room for annotations/labels
MAX_NODES = 100_000  # nodes after alias expansion (a real spec has a few hundred)
MAX_ALIASES = 100
MAX_SCALAR_CHARS = 64 * 1024
MAX_NUMBER_CHARS = 100  # plain scalars that look numeric (CPython refuses > 4,300 digits anyway)

MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlLimitError(ValueError):
    """A limit was exceeded; `message` names what and where (without the source)."""


def _where(mark: Any) -> str:
    return f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys in a mapping (YAML 1.2 says keys are unique)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key_node.value!r} (each key may appear once)",
                    key_node.start_mark,
                )
            seen.add(ident)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_mapping)


def _looks_numeric(value: str) -> bool:
    head = value.lstrip("+-")[:2]
    return bool(head) and (head[0].isdigit() or (head[:1] == "." and head[1:2].isdigit()))


def check_limits(text: str) -> None:
    """Walk the event stream once; raise YamlLimitError on the first limit exceeded."""
    anchors: dict[str, int] = {}  # anchor -> expanded node count of the node it names
    stack: list[list[Any]] = []  # [anchor, expanded size so far] per open collection
    expanded = 0
    aliases = 0

    def add(n: int) -> None:
        nonlocal expanded
        expanded += n
        if stack:
            stack[-1][1] += n
        if expanded > MAX_NODES:
            raise YamlLimitError(f"expands to more than {MAX_NODES} nodes (alias expansion)")

    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(ev, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise YamlLimitError(f"{_where(ev.start_mark)}: nested deeper than {MAX_DEPTH} levels")
            add(1)
            stack.append([ev.anchor, 0])
        elif isinstance(ev, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
            if anchor is not None:
                anchors[anchor] = size + 1
        elif isinstance(ev, yaml.ScalarEvent):
            value = ev.value
            if len(value) > MAX_SCALAR_CHARS:
                raise YamlLimitError(f"{_where(ev.start_mark)}: a value longer than {MAX_SCALAR_CHARS} characters")
            if ev.style is None and len(value) > MAX_NUMBER_CHARS and _looks_numeric(value):
                raise YamlLimitError(f"{_where(ev.start_mark)}: a number longer than {MAX_NUMBER_CHARS} characters")
            if ev.anchor is not None:
                anchors[ev.anchor] = 1
            add(1)
        elif isinstance(ev, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise YamlLimitError(f"{_where(ev.start_mark)}: more than {MAX_ALIASES} aliases")
            add(anchors.get(ev.anchor or "", 1))


def decode(data: bytes) -> str:
    """UTF-8 text of a spec file's bytes (size-checked), or YamlLimitError."""
    if len(data) > MAX_SPEC_BYTES:
        raise YamlLimitError(f"file is larger than {MAX_SPEC_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlLimitError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); is this a binary file?"
        ) from None


def load_all(text: str) -> list[Any]:
    """Every non-empty document in `text`, after the limits; yaml.YAMLError / YamlLimitError on failure."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise YamlLimitError(f"document is larger than {MAX_SPEC_BYTES} bytes")
    check_limits(text)
    try:
        return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]  # a SafeLoader subclass
    except (ValueError, RecursionError) as exc:  # e.g. an over-long number in a quoted tagged scalar
        raise YamlLimitError(f"cannot be loaded: {type(exc).__name__}: {str(exc)[:200]}") from None
