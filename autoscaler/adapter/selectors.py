"""Kubernetes label-selector parsing and matching (the `labelSelector` / `metricLabelSelector` strings).

Owned by the adapter because the metrics APIs receive selectors as strings built by the HPA
(`LabelSelectorAsSelector(...).String()`) and must answer malformed ones with a 400 Status rather
than a crash. This is a faithful port of the grammar in k8s.io/apimachinery `pkg/labels/selector.go`:
comma-separated requirements `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`, `k>n`,
`k<n`, with the qualified-name rules for keys and the label-value rules for values.
Pure stdlib; no wall time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_INT_RE = re.compile(r"^[-+]?[0-9]+$")
_SPECIAL = "!=(),<>"
_MAX_NAME_LEN = 63
_MAX_PREFIX_LEN = 253


class SelectorError(ValueError):
    """A selector string that does not parse; the message names the offending part."""


class Op(str, Enum):
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op is Op.EQUALS or self.op is Op.DOUBLE_EQUALS:  # the common case first
            return value is not None and value == self.values[0]
        present = value is not None
        if self.op is Op.EXISTS:
            return present
        if self.op is Op.DOES_NOT_EXIST:
            return not present
        if self.op is Op.IN:
            return present and value in self.values
        if self.op in (Op.NOT_EQUALS, Op.NOT_IN):
            return not present or value not in self.values
        # Gt / Lt: the label must exist and hold an integer.
        if value is None or not _INT_RE.match(value):
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.op is Op.GREATER_THAN else int(value) < bound

    def __str__(self) -> str:
        if self.op is Op.EXISTS:
            return self.key
        if self.op is Op.DOES_NOT_EXIST:
            return f"!{self.key}"
        if self.op in (Op.IN, Op.NOT_IN):
            return f"{self.key} {self.op.value} ({','.join(sorted(self.values))})"
        sym = {Op.GREATER_THAN: ">", Op.LESS_THAN: "<"}.get(self.op, self.op.value)
        return f"{self.key}{sym}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    """A parsed selector; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def as_label_selector(self) -> dict[str, Any] | None:
        """The metav1.LabelSelector JSON echoed in MetricValue (None for the empty selector).

        Gt/Lt have no LabelSelector form (apimachinery's ParseToLabelSelector rejects them), so they
        are left out of the echo; they still filter.
        """
        if self.empty:
            return None
        match_labels: dict[str, str] = {}
        exprs: list[dict[str, Any]] = []
        for r in self.requirements:
            if r.op in (Op.EQUALS, Op.DOUBLE_EQUALS):
                match_labels[r.key] = r.values[0]
            elif r.op is Op.NOT_EQUALS:
                exprs.append({"key": r.key, "operator": "NotIn", "values": [r.values[0]]})
            elif r.op is Op.IN:
                exprs.append({"key": r.key, "operator": "In", "values": sorted(r.values)})
            elif r.op is Op.NOT_IN:
                exprs.append({"key": r.key, "operator": "NotIn", "values": sorted(r.values)})
            elif r.op is Op.EXISTS:
                exprs.append({"key": r.key, "operator": "Exists"})
            elif r.op is Op.DOES_NOT_EXIST:
                exprs.append({"key": r.key, "operator": "DoesNotExist"})
        out: dict[str, Any] = {}
        if match_labels:
            out["matchLabels"] = match_labels
        if exprs:
            out["matchExpressions"] = exprs
        return out


EVERYTHING = Selector()


def validate_key(key: str) -> None:
    """Label keys are qualified names: `[prefix/]name` (prefix a DNS-1123 subdomain)."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            raise SelectorError(f"invalid label key {key!r}: prefix part must be non-empty")
        if len(prefix) > _MAX_PREFIX_LEN or not _DNS1123_SUBDOMAIN_RE.match(prefix):
            raise SelectorError(f"invalid label key {key!r}: prefix must be a DNS-1123 subdomain")
    if not name:
        raise SelectorError(f"invalid label key {key!r}: name part must be non-empty")
    if len(name) > _MAX_NAME_LEN or not _NAME_RE.match(name):
        raise SelectorError(
            f"invalid label key {key!r}: name part must be at most 63 characters of alphanumerics, "
            "'-', '_' or '.', starting and ending with an alphanumeric character"
        )


def validate_value(value: str) -> None:
    if value == "":
        return
    if len(value) > _MAX_NAME_LEN or not _NAME_RE.match(value):
        raise SelectorError(
            f"invalid label value {value!r}: must be at most 63 characters of alphanumerics, "
            "'-', '_' or '.', starting and ending with an alphanumeric character"
        )


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in _SPECIAL:
            two = text[i : i + 2]
            if two in ("==", "!="):
                tokens.append(two)
                i += 2
            else:
                tokens.append(c)
                i += 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in _SPECIAL:
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.pos += 1
        return tok

    @staticmethod
    def is_ident(tok: str | None) -> bool:
        """Identifiers exclude operators and the keywords `in`/`notin` (as apimachinery's lexer does)."""
        return tok is not None and tok not in ("!", "=", "==", "!=", "(", ")", ",", "<", ">", "in", "notin")

    def fail(self, what: str) -> SelectorError:
        return SelectorError(f"unable to parse requirement: {what}")

    def parse(self) -> Selector:
        reqs: list[Requirement] = []
        if self.peek() is None:
            return EVERYTHING
        while True:
            reqs.append(self.requirement())
            tok = self.take()
            if tok is None:
                break
            if tok != ",":
                raise self.fail(f"found {tok!r}, expected: ',' or end of string")
            if self.peek() is None:
                raise self.fail("found end of string after ',', expected: identifier or '!'")
        return Selector(tuple(reqs))

    def requirement(self) -> Requirement:
        tok = self.take()
        if tok == "!":
            key = self.take()
            if not self.is_ident(key):
                raise self.fail(f"found {key!r}, expected: identifier after '!'")
            assert key is not None
            validate_key(key)
            nxt = self.peek()
            if nxt is not None and nxt != ",":
                raise self.fail(f"found {nxt!r}, expected: ',' or end of string after '!{key}'")
            return Requirement(key, Op.DOES_NOT_EXIST)
        if not self.is_ident(tok):
            raise self.fail(f"found {tok if tok is not None else 'end of string'!r}, expected: identifier")
        assert tok is not None
        key = tok
        validate_key(key)
        op_tok = self.peek()
        if op_tok is None or op_tok == ",":
            return Requirement(key, Op.EXISTS)
        self.take()
        if op_tok in ("=", "==", "!="):
            value = self.take()
            if value is None or value == ",":
                # `k=` selects an empty value.
                if value == ",":
                    self.pos -= 1
                value = ""
            elif not self.is_ident(value):
                raise self.fail(f"found {value!r}, expected: value after '{op_tok}'")
            validate_value(value)
            return Requirement(key, Op(op_tok), (value,))
        if op_tok in ("<", ">"):
            value = self.take()
            if value is None or not _INT_RE.match(value):
                raise self.fail(f"for '{op_tok}' operator, the value must be an integer, got {value!r}")
            return Requirement(key, Op.GREATER_THAN if op_tok == ">" else Op.LESS_THAN, (value,))
        if op_tok in ("in", "notin"):
            return Requirement(key, Op(op_tok), self.value_set(op_tok))
        raise self.fail(f"found {op_tok!r}, expected: in, notin, =, ==, !=, gt, lt")

    def value_set(self, op: str) -> tuple[str, ...]:
        if self.take() != "(":
            raise self.fail(f"expected '(' after '{op}'")
        values: list[str] = []
        if self.peek() == ")":
            self.take()
            return ("",)  # apimachinery: `k in ()` is the set {""}
        while True:
            tok = self.peek()
            if tok in (",", ")"):
                values.append("")  # `k in (a,)` holds the empty value
            else:
                self.take()
                if not self.is_ident(tok):
                    raise self.fail(f"found {tok!r}, expected: value in '{op}' set")
                assert tok is not None
                validate_value(tok)
                values.append(tok)
            sep = self.take()
            if sep == ")":
                return tuple(dict.fromkeys(values))
            if sep != ",":
                raise self.fail(f"found {sep!r}, expected: ',' or ')' in '{op}' set")


@functools.lru_cache(maxsize=1024)
def parse_selector(text: str | None) -> Selector:
    """Parse a label-selector string; None or "" is the match-everything selector.

    Raises SelectorError for malformed input (the adapter answers 400 BadRequest).
    """
    if text is None or text.strip() == "":
        return EVERYTHING
    return _Parser(text).parse()
