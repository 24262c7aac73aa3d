"""JSON and JSON-lines files read back defensively: run files, reports, any JSON minivit reads.

    read_json_file(path, schema=None)           -> the object, checked against ``schema``
    read_jsonl(path, record=schema)             -> [record, ...]; a torn last line is dropped
                                                   with a warning (a crash mid-append)
    Num(...), Str(...), Bool(), List(...), Obj({...}), Any()    the schema, checked by
    spec.check(value, where) -> ValueError "field WHERE: ..."

A file is opened without blocking and must be a plain file (a FIFO or /dev/zero would hang
or never end); it may be at most ``max_bytes`` long (MAX_JSON_BYTES, MAX_JSONL_BYTES) and
nested at most MAX_DEPTH deep.  Every failure is one ValueError naming the file (and the line
and field): not UTF-8, not JSON, too big, too deep, a section of the wrong type, a string
where a number belongs, NaN or a number out of range.
"""

from __future__ import annotations

import json
import math
import os
import stat
import warnings
from pathlib import Path

MAX_JSON_BYTES = 64 << 20        # config.json, eval reports (a 1000-class confusion: ~5 MB)
MAX_JSONL_BYTES = 512 << 20      # metrics.jsonl, steps.jsonl (a million steps: ~70 MB)
MAX_LINE_BYTES = 1 << 20         # one record of a JSON-lines file
MAX_DEPTH = 32                   # minivit's files nest 3 deep


# ---------------------------------------------------------------------------- the schema
class Spec:
    """What a value must be.  ``optional``: None is allowed too."""

    optional = False

    def check(self, value, where: str) -> None:
        if value is None and self.optional:
            return
        problem = self.problem(value, where)
        if problem:
            raise ValueError(f"field {where}: {problem}" if where else f"top level: {problem}")

    def problem(self, value, where: str) -> str:
        raise NotImplementedError


def _got(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Any(Spec):
    def problem(self, value, where):
        return ""


class Num(Spec):
    """A finite number in [lo, hi] (an integer with integer=True); never a bool."""

    def __init__(self, lo=None, hi=None, integer=False, optional=False):
        self.lo, self.hi, self.integer, self.optional = lo, hi, integer, optional

    def problem(self, value, where):
        kind = "an integer" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int if self.integer
                                                     else (int, float)):
            return f"expected {kind}, got {_got(value)}"
        if not math.isfinite(value):
            return f"expected a finite number, got {_got(value)}"
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            return (f"expected {kind} in [{'-inf' if self.lo is None else self.lo}, "
                    f"{'inf' if self.hi is None else self.hi}], got {_got(value)}")
        return ""


class Str(Spec):
    def __init__(self, choices=None, optional=False, max_len=4096):
        self.choices, self.optional, self.max_len = choices, optional, max_len

    def problem(self, value, where):
        if not isinstance(value, str):
            return f"expected a string, got {_got(value)}"
        if self.choices is not None and value not in self.choices:
            return f"expected one of {', '.join(self.choices)}, got {_got(value)}"
        if len(value) > self.max_len:
            return f"a string of {len(value)} characters (at most {self.max_len})"
        return ""


class Bool(Spec):
    def __init__(self, optional=False):
        self.optional = optional

    def problem(self, value, where):
        return "" if isinstance(value, bool) else f"expected true or false, got {_got(value)}"


class List(Spec):
    """A list of ``item``, with min_len..max_len entries."""

    def __init__(self, item: Spec, min_len=0, max_len=None, optional=False):
        self.item, self.min_len, self.max_len, self.optional = item, min_len, max_len, optional

    def problem(self, value, where):
        if not isinstance(value, list):
            return f"expected a list, got {_got(value)}"
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            most = "" if self.max_len is None else f", at most {self.max_len}"
            return f"a list of {len(value)} entries (at least {self.min_len}{most})"
        for i, v in enumerate(value):
            self.item.check(v, f"{where}[{i}]")
        return ""


class Obj(Spec):
    """An object; the fields named are checked when present (all of ``required`` must be);
    other keys are left alone."""

    def __init__(self, fields: dict, required=(), optional=False):
        self.fields, self.required, self.optional = fields, tuple(required), optional

    def problem(self, value, where):
        if not isinstance(value, dict):
            return f"expected an object, got {_got(value)}"
        for name in self.required:
            if name not in value:
                return f"has no {name!r}"
        for name, spec in self.fields.items():
            if name in value:
                spec.check(value[name], f"{where}.{name}" if where else name)
        return ""


class OneOf(Spec):
    """Any of several specs (e.g. a list or a string)."""

    def __init__(self, *specs, optional=False):
        self.specs, self.optional = specs, optional

    def problem(self, value, where):
        problems = []
        for spec in self.specs:
            try:
                spec.check(value, where)
                return ""
            except ValueError as e:
                problems.append(str(e).split(": ", 1)[-1])
        return " or ".join(problems)


# ---------------------------------------------------------------------------- reading
def read_bounded(path, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of ``path``: a plain file of at most ``max_bytes``, opened without blocking;
    FileNotFoundError or ValueError naming it."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found") from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a plain file (a folder, FIFO or device); "
                             f"expected a {what}")
        if st.st_size > max_bytes:
            raise ValueError(f"{path} is {st.st_size:,} bytes, more than the {max_bytes:,} a "
                             f"{what} may have; not a file minivit wrote?")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:                              # grew while being read
        raise ValueError(f"{path} is more than {max_bytes:,} bytes")
    return data


def depth_of(obj) -> int:
    """How deep lists and objects nest in ``obj`` (1 for a flat one), counted up to
    MAX_DEPTH + 1 without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                break
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict)
                                                   else value))
    return deepest


def parse_json(text: str | bytes):
    """json.loads that reports depth (RecursionError) and huge integers as ValueError."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} deep") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError as e:                      # JSONDecodeError, ints over 4300 digits
        raise ValueError(f"not valid JSON ({e})") from None
    if depth_of(obj) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} deep")
    return obj


def read_json_file(path, schema: Spec | None = None, max_bytes: int = MAX_JSON_BYTES,
                   what: str = "JSON file"):
    """The JSON in ``path``, bounded and (with ``schema``) checked; every failure is a
    ValueError naming the file (FileNotFoundError when there is none)."""
    data = read_bounded(path, max_bytes, what)
    try:
        obj = parse_json(data)
        if schema is not None:
            schema.check(obj, "")
    except ValueError as e:
        raise ValueError(f"{path}: {e}; fix or delete that file") from None
    return obj


def read_jsonl(path, record: Spec, kind: str = "record", max_bytes: int = MAX_JSONL_BYTES,
               torn: str = "warn") -> list:
    """The records of a JSON-lines file, each checked against ``record``.  The last line may
    be torn (the disk filled up or the process died mid-append: it does not parse): with
    torn="warn" it is dropped with a warning, with torn="skip" silently; any other bad line
    is a ValueError naming file, line and field."""
    text = read_bounded(path, max_bytes, "JSON-lines file").decode("utf-8", errors="replace")
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    records = []
    for i, (n, line) in enumerate(lines):
        parsed = False
        try:
            if len(line) > MAX_LINE_BYTES:
                raise ValueError(f"a line of {len(line):,} characters")
            rec = parse_json(line)
            parsed = True
            record.check(rec, "")
        except ValueError as e:
            if i == len(lines) - 1 and not parsed:
                if torn == "warn":
                    warnings.warn(f"{path} line {n}: dropped an incomplete last line (the run "
                                  "stopped in the middle of writing it)", stacklevel=3)
                break
            raise ValueError(f"{path} line {n}: not a {kind} ({e}); fix or delete that "
                             "line") from None
        records.append(rec)
    return records


__all__ = ["MAX_DEPTH", "MAX_JSONL_BYTES", "MAX_JSON_BYTES", "Any", "Bool", "List", "Num", "Obj",
           "OneOf", "Spec", "Str", "depth_of", "parse_json", "read_bounded", "read_json_file",
           "read_jsonl"]
