"""Reading policy.csv: the contract's field quoting, with file and line kept for every rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from catalog.errors import PolicyError

# ptype -> number of fields after the ptype
ARITY = {"g": 2, "g2": 2, "p": 4, "p2": 5, "p3": 2}


@dataclass(frozen=True)
class PolicyLine:
    """One rule of a policy file: its type, its fields and where it was written."""

    ptype: str
    values: tuple[str, ...]
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def split_fields(text: str) -> list[str]:
    """Split on commas outside parentheses and double quotes; quoted fields lose their quotes.

    Inside double quotes a doubled quote ("") stands for one. Unquoted fields are stripped.
    """
    fields: list[str] = []
    buf: list[str] = []
    depth = 0
    quoted = False  # inside "..."
    was_quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == '"':
                if i + 1 < len(text) and text[i + 1] == '"':
                    buf.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                buf.append(c)
        elif c == '"' and not "".join(buf).strip():
            quoted, was_quoted, buf = True, True, []
        elif c == "(":
            depth += 1
            buf.append(c)
        elif c == ")":
            depth -= 1
            buf.append(c)
        elif c == "," and depth <= 0:
            fields.append(_finish(buf, was_quoted))
            buf, was_quoted, depth = [], False, 0
        else:
            if was_quoted and not c.isspace():
                raise ValueError("text after a closing double quote")
            buf.append(c)
        i += 1
    if quoted:
        raise ValueError("unterminated double quote")
    if depth > 0:
        raise ValueError("unbalanced parentheses")
    fields.append(_finish(buf, was_quoted))
    return fields


def _finish(buf: list[str], was_quoted: bool) -> str:
    s = "".join(buf)
    return s if was_quoted else s.strip()


def parse_text(text: str, file: str, ptypes: dict[str, int] | None = None) -> list[PolicyLine]:
    """Parse policy text; PolicyError names the file and line of the first bad line."""
    out, problems = parse_text_all(text, file, ptypes)
    if problems:
        raise problems[0]
    return out


def parse_text_all(
    text: str, file: str, ptypes: dict[str, int] | None = None
) -> tuple[list[PolicyLine], list[PolicyError]]:
    """Parse policy text, collecting every syntax problem instead of stopping at the first."""
    arity = ptypes or ARITY
    out: list[PolicyLine] = []
    problems: list[PolicyError] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            fields = split_fields(line)
        except ValueError as e:
            problems.append(PolicyError(f"cannot read the line: {e}", file, n))
            continue
        ptype, values = fields[0], tuple(fields[1:])
        if ptype not in arity:
            problems.append(
                PolicyError(
                    f"unknown line type {ptype!r}; known: {', '.join(sorted(arity))}", file, n
                )
            )
            continue
        if len(values) != arity[ptype]:
            problems.append(
                PolicyError(
                    f"a {ptype} line has {arity[ptype]} fields after {ptype!r}, this one has "
                    f"{len(values)} (quote a field that holds a comma outside parentheses)",
                    file,
                    n,
                )
            )
            continue
        if any(v == "" for v in values):
            problems.append(PolicyError(f"empty field in a {ptype} line", file, n))
            continue
        out.append(PolicyLine(ptype, values, file, n))
    return out, problems


def read_file(path: Path, ptypes: dict[str, int] | None = None) -> list[PolicyLine]:
    """Read and parse one policy file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(f"cannot read: {e}", str(path)) from None
    return parse_text(text, str(path), ptypes)
