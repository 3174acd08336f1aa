"""Faithful edits of TF Serving's batching file: change the fields we tune, keep every other byte.

TF Serving reads `--batching_parameters_file` as a text-format `BatchingParameters` message
(tensorflow_serving/servables/tensorflow/session_bundle_config.proto). Operators put more in it
than we tune: `allowed_batch_sizes`, `pad_variable_length_inputs`, `thread_pool_name`, newer
fields such as large-batch splitting, comments. Rewriting the whole file from our four numbers
would drop them, so this module edits the text instead:

- a small lexer/parser for the protobuf text format (comments, `{}`/`<>` messages, optional
  colons, `[a, b]` lists, strings, signed/hex/octal integers, `,`/`;` separators) records where
  every top-level field and the `value` inside each wrapper sits in the text;
- `with_params()` replaces only the digits of the four tuned wrappers (`max_batch_size`,
  `batch_timeout_micros`, `num_batch_threads`, `max_enqueued_batches`; TF Serving writes them
  as `google.protobuf.Int64Value`, `max_batch_size { value: 32 }`), appends a tuned field the file
  lacks, and leaves everything else byte for byte;
- `allowed_batch_sizes` stays consistent: TF Serving refuses to load a model whose last allowed
  batch size differs from `max_batch_size` (tensorflow_serving/batching/batching_session.cc,
  `CreateBatchingSession`: "Last entry in allowed_batch_sizes must match max_batch_size"), so when
  we change `max_batch_size` the list keeps its sizes below the new maximum and ends with it. With
  `enable_large_batch_splitting` the rule is against `max_execution_batch_size` instead, which we
  do not tune, so the list is left alone.

Every text is also checked with `google.protobuf.text_format` against the upstream message
(`batching_proto.py`) before and after the edit, so a file TF Serving would reject is never
accepted or produced. Errors raise `BatchingFileError` with the line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from autoscaler.actuators import batching_proto
from autoscaler.spec.types import BatchingParams

# text-format field name -> BatchingParams attribute (the fields the tuner changes)
TUNED = (
    ("max_batch_size", "max_batch_size"),
    ("batch_timeout_micros", "batch_timeout_us"),
    ("num_batch_threads", "num_batch_threads"),
    ("max_enqueued_batches", "max_enqueued_batches"),
)
ALLOWED = "allowed_batch_sizes"
SPLITTING = "enable_large_batch_splitting"

_TOKEN = re.compile(
    r"""(?P<ws>\s+|\#[^\n]*)
      | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<num>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[fF]?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[{}<>\[\]:,;\-./])""",
    re.VERBOSE,
)


class BatchingFileError(ValueError):
    """The batching file cannot be read or edited safely."""


@dataclass(frozen=True)
class Token:
    kind: str  # str | num | ident | punct
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Entry:
    """One field occurrence: `name [:] value`, with its span in the text."""

    name: str
    start: int
    value_end: int  # end of the value (before any `,`/`;` separator)
    kind: str  # scalar | message | list
    scalars: tuple[tuple[Token, ...], ...] = ()  # scalar value (tokens) or list items
    children: tuple[Entry, ...] = ()


def _where(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {col}"


def _tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise BatchingFileError(f"unexpected character {text[pos]!r} at {_where(text, pos)}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), m.start(), m.end()))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def _peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _fail(self, expected: str) -> BatchingFileError:
        tok = self._peek()
        got = f"{tok.text!r} at {_where(self.text, tok.start)}" if tok else "end of file"
        return BatchingFileError(f"expected {expected}, got {got}")

    def _take(self, text: str) -> Token:
        tok = self._peek()
        if tok is None or tok.kind != "punct" or tok.text != text:
            raise self._fail(repr(text))
        self.i += 1
        return tok

    def _is(self, *texts: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind == "punct" and tok.text in texts

    def fields(self, closer: str | None) -> tuple[Entry, ...]:
        out: list[Entry] = []
        while self._peek() is not None and not (closer is not None and self._is(closer)):
            out.append(self._field())
            if self._is(",", ";"):
                self.i += 1
        if closer is not None:
            self._take(closer)
        return tuple(out)

    def _name(self) -> tuple[str, int]:
        tok = self._peek()
        if tok is not None and tok.kind == "ident":
            self.i += 1
            return tok.text, tok.start
        if tok is not None and self._is("["):  # extension or Any type URL: [a.b/c]
            self.i += 1
            parts: list[str] = []
            while self._peek() is not None and not self._is("]"):
                parts.append(self.toks[self.i].text)
                self.i += 1
            self._take("]")
            return "[" + "".join(parts) + "]", tok.start
        raise self._fail("a field name")

    def _message(self) -> tuple[tuple[Entry, ...], int]:
        opener = self.toks[self.i].text
        self.i += 1
        children = self.fields("}" if opener == "{" else ">")
        return children, self.toks[self.i - 1].end

    def _scalar(self) -> tuple[Token, ...]:
        tok = self._peek()
        if tok is None:
            raise self._fail("a value")
        if tok.kind == "str":
            toks = []
            while self._peek() is not None and self.toks[self.i].kind == "str":  # adjacent strings concatenate
                toks.append(self.toks[self.i])
                self.i += 1
            return tuple(toks)
        if self._is("-"):
            self.i += 1
            nxt = self._peek()
            if nxt is None or nxt.kind not in ("num", "ident"):
                raise self._fail("a number after '-'")
            self.i += 1
            return (Token("num", "-" + nxt.text, tok.start, nxt.end),)
        if tok.kind in ("num", "ident"):
            self.i += 1
            return (tok,)
        raise self._fail("a value")

    def _field(self) -> Entry:
        name, start = self._name()
        colon = self._is(":")
        if colon:
            self.i += 1
        if self._is("{", "<"):
            children, end = self._message()
            return Entry(name, start, end, "message", children=children)
        if self._is("["):
            self.i += 1
            items: list[tuple[Token, ...]] = []
            kids: list[Entry] = []
            while not self._is("]"):
                if self._is("{", "<"):
                    sub, _ = self._message()
                    kids.append(Entry(name, start, start, "message", children=sub))
                else:
                    items.append(self._scalar())
                if not self._is("]"):
                    self._take(",")
            end = self._take("]").end
            return Entry(name, start, end, "list", scalars=tuple(items), children=tuple(kids))
        if not colon:
            raise self._fail(f"':' or '{{' after {name!r}")
        value = self._scalar()
        return Entry(name, start, value[-1].end, "scalar", scalars=(value,))


def _int(text: str, tok: Token, what: str) -> int:
    s = tok.text
    neg = s.startswith("-")
    body = s[1:] if neg else s
    try:
        if body.lower().startswith("0x"):
            value = int(body, 16)
        elif len(body) > 1 and body.startswith("0"):
            value = int(body, 8)
        else:
            value = int(body, 10)
    except ValueError:
        raise BatchingFileError(f"{what}: expected an integer, got {s!r} at {_where(text, tok.start)}") from None
    return -value if neg else value


@dataclass(frozen=True)
class BatchingFile:
    """A parsed batching file: its text and the top-level fields' positions."""

    text: str
    entries: tuple[Entry, ...]

    @classmethod
    def parse(cls, text: str) -> BatchingFile:
        entries = _Parser(text).fields(None)
        try:
            batching_proto.parse(text)
        except batching_proto.ParseError as exc:
            raise BatchingFileError(f"not a valid BatchingParameters text message: {exc}") from None
        return cls(text, entries)

    def _all(self, name: str) -> list[Entry]:
        return [e for e in self.entries if e.name == name]

    def _wrapper(self, name: str) -> tuple[Entry, Token | None] | None:
        """The wrapper field `name { value: N }` and its value token (None: `name {}`), or None if absent."""
        found = self._all(name)
        if not found:
            return None
        if len(found) > 1:
            raise BatchingFileError(f"{name}: a singular field, set {len(found)} times")
        entry = found[0]
        if entry.kind != "message":
            raise BatchingFileError(
                f"{name}: expected the wrapper form `{name} {{ value: N }}` (google.protobuf.Int64Value) "
                f"at {_where(self.text, entry.start)}"
            )
        values = [c for c in entry.children if c.name == "value" and c.kind == "scalar"]
        if len(values) != len(entry.children) or len(values) > 1:
            where = _where(self.text, entry.start)
            raise BatchingFileError(f"{name}: a wrapper holds exactly one `value` field, at {where}")
        return entry, (values[0].scalars[0][0] if values else None)

    def params(self, defaults: BatchingParams) -> BatchingParams:
        """The tuned parameters the file sets; a field the file omits keeps its value in `defaults`."""
        out = defaults
        for pb_name, attr in TUNED:
            found = self._wrapper(pb_name)
            if found is not None:
                tok = found[1]
                out = replace(out, **{attr: _int(self.text, tok, pb_name) if tok is not None else 0})
        return out

    def allowed_batch_sizes(self) -> tuple[int, ...]:
        sizes: list[int] = []
        for e in self._all(ALLOWED):
            if e.kind == "message" or e.children:
                raise BatchingFileError(f"{ALLOWED}: expected integers, got a message at {_where(self.text, e.start)}")
            sizes += [_int(self.text, item[0], ALLOWED) for item in e.scalars]
        return tuple(sizes)

    def large_batch_splitting(self) -> bool:
        for e in self._all(SPLITTING):
            if e.kind == "scalar" and e.scalars[0][0].text.lower() in ("true", "t", "1"):
                return True
        return False

    def with_params(self, params: BatchingParams) -> tuple[str, tuple[str, ...]]:
        """The text with `params` in the tuned fields, and notes on anything else changed."""
        edits: list[tuple[int, int, str]] = []
        appends: list[str] = []
        notes: list[str] = []
        for pb_name, attr in TUNED:
            new = int(getattr(params, attr))
            found = self._wrapper(pb_name)
            if found is None:
                appends.append(f"{pb_name} {{ value: {new} }}")
            elif found[1] is None:
                edits.append((found[0].start, found[0].value_end, f"{pb_name} {{ value: {new} }}"))
            elif _int(self.text, found[1], pb_name) != new:
                edits.append((found[1].start, found[1].end, str(new)))
        old = self.allowed_batch_sizes()
        if old and not self.large_batch_splitting():
            m = params.max_batch_size
            fixed = (*sorted({s for s in old if s < m}), m)
            if fixed != old:
                edits += self._rewrite_allowed(fixed)
                notes.append(
                    f"allowed_batch_sizes {list(old)} -> {list(fixed)} (TF Serving requires the last entry to "
                    f"equal max_batch_size)"
                )
        text = self.text
        for start, end, new_text in sorted(edits, reverse=True):
            text = text[:start] + new_text + text[end:]
        if appends:
            if text and not text.endswith("\n"):
                text += "\n"
            text += "".join(line + "\n" for line in appends)
        check = BatchingFile.parse(text)
        if check.params(params) != params or (old and check.allowed_batch_sizes()[-1:] != (params.max_batch_size,)
                                              and not self.large_batch_splitting()):  # fmt: skip
            raise BatchingFileError("internal error: the edited file does not read back the parameters written")
        return text, tuple(notes)

    def _rewrite_allowed(self, sizes: tuple[int, ...]) -> list[tuple[int, int, str]]:
        found = self._all(ALLOWED)
        first = found[0]
        if first.kind == "list":
            rendered = f"{ALLOWED}: [{', '.join(str(s) for s in sizes)}]"
        else:
            line_start = self.text.rfind("\n", 0, first.start) + 1
            indent = self.text[line_start : first.start] if not self.text[line_start : first.start].strip() else " "
            rendered = ("\n" + indent).join(f"{ALLOWED}: {s}" for s in sizes)
        edits = [(first.start, first.value_end, rendered)]
        for e in found[1:]:
            start, end = e.start, e.value_end
            if end < len(self.text) and self.text[end] in ",;":
                end += 1
            line_start = self.text.rfind("\n", 0, start) + 1
            line_end = self.text.find("\n", end)
            line_end = len(self.text) if line_end < 0 else line_end
            if not self.text[line_start:start].strip() and not self.text[end:line_end].strip():
                start, end = line_start, min(line_end + 1, len(self.text))  # the whole line
            edits.append((start, end, ""))
        return edits
