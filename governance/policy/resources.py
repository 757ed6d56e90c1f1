"""Resource names and patterns: `db`, `db.table`, `db.table.column`, `*` per segment, tags,
queues, locations and the policy itself.

Matching is exact segment by segment (case-insensitive), never by prefix of a name: `sales`
matches `sales.orders` but not `sales_pii` (pycasbin's regex/key matchers get this wrong). A
`location:PREFIX` covers the prefix and what lies below it, by whole path segments. A resource of
`*` alone covers every resource of every kind.
"""

from __future__ import annotations

from collections.abc import Mapping

from governance.locations import resolve

ACTIONS = frozenset(
    [
        "select",
        "insert",
        "update",
        "delete",
        "describe",
        "create",
        "alter",
        "drop",
        "unmask",
        "submit",
    ]
)


LOCATION = "location:"
POLICY = "policy"


def resource_kind(resource: str) -> str:
    """'queue', 'location', 'policy', 'tag' or 'data' (databases, tables, columns)."""
    low = resource.lower()
    if low.startswith("queue:"):
        return "queue"
    if low.startswith(LOCATION):
        return "location"
    if low == POLICY:
        return "policy"
    if low.startswith("tag:"):
        return "data"  # a tag pattern covers data resources (columns)
    return "data"


def location_covers(prefix: str, target: str) -> bool:
    """Whether a granted location prefix covers a target path or URI, by whole segments.

    `/data/landing` covers `/data/landing` and `/data/landing/a.csv`, never `/data/landing2`;
    `*` covers every location. Both sides must already be resolved (no `..`, no symlinks).
    """
    if prefix == "*":
        return True
    prefix = prefix.rstrip("/")
    if not prefix:
        return False
    return target == prefix or target.startswith(prefix + "/")


def split(resource: str) -> list[str]:
    return resource.lower().split(".")


def pattern_matches(pattern: str, resource: str, tags: Mapping[str, Mapping[str, str]]) -> bool:
    """Does a policy RESOURCE cover a requested resource?

    A database or table pattern covers what is inside it; a column pattern covers only that
    column. A `tag:K=V` pattern covers a column whose effective tags hold K=V (tags are
    resolved per column, so a column's own tag can take it out of a table-wide tag).
    """
    if pattern == "*":
        return True
    kind, r_kind = resource_kind(pattern), resource_kind(resource)
    if kind != r_kind:
        return False
    if kind == "queue":
        return pattern.lower() == resource.lower() or pattern.lower() == "queue:*"
    if kind == "location":
        prefix = pattern[len(LOCATION) :]
        return location_covers(
            prefix if prefix == "*" else resolve(prefix), resource[len(LOCATION) :]
        )
    if kind == "policy":
        return True
    if pattern.startswith("tag:"):
        if resource.count(".") != 2:
            return False  # tags are resolved per column, never for a whole table
        key, _, value = pattern[4:].partition("=")
        effective = tags.get(resource.lower())
        return effective is not None and effective.get(key) == value
    p, r = split(pattern), split(resource)
    if len(p) > len(r):
        return False
    return all(a == "*" or a == b for a, b in zip(p, r, strict=False))


def action_matches(requested: str, granted: str) -> bool:
    return granted == "*" or granted.lower() == requested.lower()


def effective_tags(g2: list[tuple[str, str]], resources: list[str]) -> dict[str, dict[str, str]]:
    """Effective tags of each resource: database -> table -> column, the nearest tag of a key wins."""
    own: dict[str, dict[str, str]] = {}
    for res, tag in g2:
        if not tag.startswith("tag:") or "=" not in tag:
            continue
        key, _, value = tag[4:].partition("=")
        own.setdefault(res.lower(), {})[key] = value
    out: dict[str, dict[str, str]] = {}
    for res in resources:
        parts = split(res)
        merged: dict[str, str] = {}
        for i in range(1, len(parts) + 1):
            merged.update(own.get(".".join(parts[:i]), {}))
        out[res.lower()] = merged
    return out
