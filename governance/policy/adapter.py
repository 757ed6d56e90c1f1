"""A Casbin adapter that loads already-parsed policy lines (our quoting, not Casbin's)."""

from __future__ import annotations

from collections.abc import Iterable

from casbin.persist.adapter import Adapter

from catalog.errors import PolicyError
from governance.policy.lines import PolicyLine


class LinesAdapter(Adapter):
    """Feeds PolicyLines to a Casbin model; a line type the model lacks is an error, not a skip."""

    def __init__(self, lines: Iterable[PolicyLine]):
        self.lines = list(lines)

    def load_policy(self, model) -> None:  # noqa: ANN001 - casbin's Model
        for line in self.lines:
            sec = line.ptype[0]
            if sec not in model.model or line.ptype not in model.model[sec]:
                raise PolicyError(
                    f"the model does not define line type {line.ptype!r}", line.file, line.line
                )
            values = list(line.values)
            if line.ptype == "g":
                values = [v.lower() for v in values]  # names match case-insensitively everywhere
            model.model[sec][line.ptype].policy.append(values)

    def save_policy(self, model) -> bool:  # noqa: ANN001
        raise PolicyError("policy folders are edited as files, not through Casbin")
