"""`lk.policy`: the policy in force for this lake's catalog, and how to change it (rule 14)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from catalog.errors import InvalidArgument, PolicyError
from governance.gate import Audit, Gate
from governance.policy.engine import PolicyEngine, PolicyText, read_folder
from governance.policy.resources import POLICY
from governance.policy.state import PolicyState
from governance.principal import Principal

INSTALLED_ELSEWHERE = (
    "this catalog already enforces a policy installed from another folder; replace it with "
    "lk.policy.apply(DIR, user=...) (or `lake policy apply DIR`), which needs alter on policy"
)


class Policy:
    """The catalog's policy as this lake enforces it. Without one governance is off and every
    user sees everything (like Lake Formation before it is switched on); with one, everything
    is denied by default."""

    def __init__(self, gate: Gate, state: PolicyState, who: Callable[[Any], Principal]):
        self.gate = gate
        self.state = state
        self.who = who
        self.folder: Path | None = None
        state.on_edit = self._edited

    # reading -----------------------------------------------------------------------------------
    @property
    def engine(self) -> PolicyEngine | None:
        """The policy engine in force (None: no policy, governance is off)."""
        return self.state.engine()

    @property
    def version(self) -> str:
        """The content version of the policy in force ('' without one)."""
        return self.state.version

    def allowed(self, user: Any, resource: str, action: str) -> bool:
        """May `user` do `action` on `resource`? True for everyone without a policy."""
        return self.gate.allowed(self.who(user), resource, action)

    # installing --------------------------------------------------------------------------------
    def open(self, folder: Path | None, explicit: bool) -> None:
        """At connect: install `folder` on a catalog that has no policy, re-read it if it is
        the one installed, and watch it; refuse to silently replace another one."""
        if folder is None:
            return
        text = read_folder(folder)
        installed = self.state.installed()
        if installed is not None and installed.source != text.source:
            if explicit and installed.version != text.version:
                raise PolicyError(INSTALLED_ELSEWHERE)
            return
        # The text in force was checked when it was installed: re-checking it against the
        # catalog at every connect would load a snapshot of each table it names.
        if installed is None or installed.version != text.version:
            self._install(text, Principal.system() if installed else self.who(None))
        self.folder = Path(text.source)
        self.state.watch(self.folder)

    def reload(self) -> str:
        """Re-read the watched policy folder now and install it if it changed; returns the
        version in force (PolicyError if the folder is broken: the installed policy stays)."""
        if self.folder is None:
            raise PolicyError("this lake installed no policy folder; use lk.policy.apply(DIR)")
        self._install(read_folder(self.folder), self.who(None))
        return self.version

    def apply(self, folder: str | Path, *, user: Any = None) -> str:
        """Install the policy in `folder` for every client of this catalog (needs alter on
        policy); returns its version. PolicyError (nothing changes) if it has errors."""
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise InvalidArgument(f"policy folder {path} does not exist")
        p = self.who(user)

        def go(_: Audit) -> str:
            self.gate.require(p, "alter", POLICY, "the policy")
            version = self._install(read_folder(path), p, audited=False)
            self.folder = path.resolve()
            self.state.watch(self.folder)
            return version

        return self.gate.run(p, "policy_apply", f"apply policy {path.name}", go)

    def _edited(self, text: PolicyText) -> None:
        self._install(text, Principal.system())

    def _install(self, text: PolicyText, by: Principal, *, audited: bool = True) -> str:
        record = None
        if audited:
            record = self.gate.audit_record(by, "policy_apply", "install policy", "allowed")
        try:
            return self.state.install(text, by.name, record)
        except PolicyError as e:
            if audited:
                self.gate.record(by, "policy_apply", "install policy", "error", reason=str(e))
            raise
