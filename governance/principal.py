"""Principals: who an operation acts for, and how that was established (contract rule 9).

A user name is never empty, never `*` and never begins with `role:` (in any case): roles and
everyone are policy subjects, held only through `g` lines, never identities. The owner (an
embedded lake's administrator, acting without `user=`) and the system (maintenance Lakeward
starts itself) are principals of their own kinds, so no user name can pass for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog.errors import InvalidArgument

USER = "user"
OWNER = "owner"
SYSTEM = "system"

# How an identity was established; recorded in the audit trail.
ASSERTED = "asserted"  # an embedded caller's user=, trusted like DuckDB's or SQLite's caller
JOB = "job"  # a batch job acting for the user who submitted it


def check_user_name(name: object) -> str:
    """`name` if it may name a user (rule 9); InvalidArgument otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument("user must be a non-empty user name")
    if name.strip() != name or any(c in name for c in ",\n\r\t\0"):
        raise InvalidArgument(
            "a user name has no leading or trailing spaces, commas or control characters"
        )
    if name == "*":
        raise InvalidArgument("'*' means everyone in a policy; it cannot name a user")
    if name.lower().startswith("role:"):
        raise InvalidArgument(
            "names beginning with 'role:' are roles; a role is held through a g line, "
            "it never acts as a user"
        )
    return name


@dataclass(frozen=True)
class Principal:
    """Who an operation acts for.

    kind: USER (governed by the policy), OWNER (an embedded lake's administrator) or SYSTEM
    (Lakeward's own maintenance); auth: how the identity was established (ASSERTED, JOB, or a
    server's "token", "password", "mtls", "jwt"); client: the caller's address, if remote.
    """

    name: str
    kind: str = USER
    auth: str = ASSERTED
    client: str = ""

    @classmethod
    def user(cls, name: str, *, auth: str = ASSERTED, client: str = "") -> Principal:
        """A user principal; InvalidArgument if the name breaks rule 9."""
        return cls(check_user_name(name), USER, auth, client)

    @classmethod
    def owner(cls, name: str) -> Principal:
        """The administrator of an embedded lake (the calls made without user=)."""
        return cls(name or "owner", OWNER, OWNER)

    @classmethod
    def system(cls) -> Principal:
        """Lakeward itself: auto-compaction, the audit flusher, policy installation."""
        return cls("lakeward", SYSTEM, SYSTEM)

    @property
    def privileged(self) -> bool:
        """The owner and the system are not subject to the policy (they are still audited)."""
        return self.kind != USER

    def same_user(self, name: str | None) -> bool:
        """Whether `name` (e.g. a job's submitter) is this principal; names ignore case."""
        return name is not None and name.lower() == self.name.lower()

    def __str__(self) -> str:
        return self.name
