"""The few named errors doppelkit raises.

Every error that is the *user's* mistake derives from :class:`UserError`: the CLI prints its
message (no traceback) and exits with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class DoppelkitError(Exception):
    """Base class of every error doppelkit raises on purpose."""


class UserError(DoppelkitError):
    """A mistake the user can fix: bad config, bad input file, unknown persona, ….

    The message must say what was wrong and what to do instead.
    """

    exit_code = 2


class ConfigError(UserError):
    """One or more configuration problems, reported together.

    ``problems`` holds one line per problem, each naming the key, the bad value and what is
    allowed, so a user fixes everything in one pass instead of one error at a time.
    """

    def __init__(self, problems: Iterable[str], *, title: str = "Invalid configuration") -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:  # one mistake, one line
            super().__init__(f"{title}: {self.problems[0]}")
            return
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{title} ({len(self.problems)} problems):\n{lines}")


class UnknownComponentError(UserError):
    """A component name that no installed plugin registers."""

    def __init__(self, kind: str, name: str, available: Iterable[str], hint: str = "") -> None:
        self.kind, self.name = kind, name
        self.available = sorted(available)
        listed = ", ".join(self.available) or "(none installed)"
        msg = f"Unknown {kind} {name!r}. Available {kind}s: {listed}."
        if hint:
            msg += f" {hint}"
        super().__init__(msg)


class PluginConflictError(DoppelkitError):
    """Two plugins registered the same component name for the same kind."""

    def __init__(self, kind: str, name: str, first: str, second: str) -> None:
        self.kind, self.name, self.first, self.second = kind, name, first, second
        blockable = second if not second.startswith("doppelkit.") else first
        super().__init__(
            f"Two plugins register a {kind} named {name!r}: {first} and {second}. "
            f"Uninstall one, or block one with DOPPELKIT_BLOCK_PLUGINS={blockable}."
        )


class InvalidPluginError(DoppelkitError, TypeError):
    """A plugin registered something that is not a valid component of its kind."""


class MissingDependencyError(UserError):
    """A feature needs an optional extra that is not installed."""

    def __init__(self, feature: str, extra: str, detail: str = "") -> None:
        self.feature, self.extra = feature, extra
        msg = f'{feature} is not installed. Install it with: pip install "doppelkit[{extra}]"'
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class PersonaError(UserError):
    """The persona selector matches no user, or several."""


class AmbiguousPersonaError(PersonaError):
    """The persona selector matches several users (or one user in several teams)."""


class InputDataError(UserError):
    """An input file (export, dataset, …) is missing, unreadable or unsafe."""
