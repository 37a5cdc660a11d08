"""Resolving ``persona.user`` (an ID, display name or real name) to one workspace member."""

from __future__ import annotations

import difflib
import unicodedata

from doppelkit.errors import AmbiguousPersonaError, PersonaError
from doppelkit.models import Persona, PersonaSelector, User, Workspace, is_safe_id


def _describe(user: User) -> str:
    names = [n for n in (user.display_name, user.real_name, user.name) if n]
    unique = list(dict.fromkeys(names))
    return f"{user.id} ({' / '.join(unique) or 'no name'})"


def _fold(text: str) -> str:
    """A name as compared: Unicode-normalised (a name typed on one system matches the same name
    stored by another, composed or not), case-folded, without a leading ``@``, spaces squeezed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().lstrip("@").split())


def candidates(query: str, users: list[User], n: int = 5) -> list[User]:
    """The users whose names are closest to ``query`` (for "did you mean" lists)."""
    keyed: dict[str, User] = {}
    for u in users:
        for name in (u.id, u.name, u.display_name, u.real_name):
            if name:
                keyed.setdefault(_fold(name), u)
    close = difflib.get_close_matches(_fold(query), list(keyed), n=n * 2, cutoff=0.5)
    out: list[User] = []
    for key in close:
        if keyed[key] not in out:
            out.append(keyed[key])
    return out[:n]


def find_user(query: str, users: list[User], where: str = "in this workspace") -> User:
    """Match ``query`` against IDs first, then display, real and handle names (case-insensitive).

    Raises :class:`PersonaError` listing the candidates when nothing or several match.
    """
    query = query.strip()
    if query.startswith("<@") and query.endswith(">"):  # a pasted Slack mention: <@U123|name>
        query = query[2:-1].split("|", 1)[0]
    for u in users:
        if u.id == query:
            return u
    folded = _fold(query)
    for field in ("display_name", "real_name", "name"):
        matches = [u for u in users if getattr(u, field) and _fold(getattr(u, field)) == folded]
        humans = [u for u in matches if not u.deleted] or matches
        if len(humans) == 1:
            return humans[0]
        if len(humans) > 1:
            listed = "; ".join(_describe(u) for u in humans)
            raise AmbiguousPersonaError(
                f"persona.user={query!r} is ambiguous: {len(humans)} people match ({listed}). "
                "Use the user ID instead, e.g. persona.user=" + humans[0].id
            )
    close = candidates(query, users)
    hint = (
        "Closest matches: " + "; ".join(_describe(u) for u in close)
        if close
        else "Known: " + ("; ".join(_describe(u) for u in users[:8]) or "nobody")
    )
    raise PersonaError(f"No one {where} matches persona.user={query!r}. {hint}.")


def resolve_persona(selector: PersonaSelector, workspace: Workspace) -> Persona:
    """Resolve the configured persona in ``workspace``; bots can never be a persona.

    A ``selector.team`` the source does not read is refused before anything is written: the
    persona would otherwise be filed under the source's team and overwrite its datasets (the
    bot asks for ``persona.team`` = the workspace a ``/doppel train`` came from)."""
    if selector.team is not None and selector.team != workspace.team:
        raise PersonaError(
            f"persona.team={selector.team!r}, but the source reads workspace {workspace.team!r}: "
            "point source.* at that workspace's export or API. Nothing was written."
        )
    if not selector.user and workspace.default_persona:
        selector = selector.model_copy(update={"user": workspace.default_persona})
    if not selector.user:
        people = [u for u in workspace.users if not u.is_bot and not u.deleted][:8]
        listed = "; ".join(_describe(u) for u in people)
        raise PersonaError(
            "No persona chosen: set persona.user to a user ID, display name or real name"
            + (f", e.g. one of: {listed}" if listed else "")
            + "."
        )
    user = find_user(selector.user, workspace.users)
    if user.is_bot:
        raise PersonaError(f"persona.user={selector.user!r} is a bot ({_describe(user)}); choose a person.")
    if not is_safe_id(user.id):
        # Datasets and adapters are filed under the ID: one with '/' or '..' would leave home.
        raise PersonaError(
            f"persona.user={selector.user!r} is the member {user.id!r}, which is not a valid user ID "
            "(letters, digits, '_', '.', '-'): the workspace's users.json is damaged or not from Slack. "
            "Nothing was written; choose another persona or fix the export."
        )
    return Persona(team=workspace.team, user=user)


def select_persona(query: str, entries: list[tuple[str, User]], where: str) -> tuple[str, User]:
    """Find ``query`` among ``(team, user)`` entries (datasets, published adapters) by ID,
    display name, real name or handle — the same rules as :func:`find_user` at ingest.

    Raises :class:`PersonaError` when nothing matches, or when the one person matched has
    entries in several teams (then ``persona.team`` decides).
    """
    users = list({u.id: u for _, u in entries}.values())
    user = find_user(query, users, where)
    teams = sorted({team for team, u in entries if u.id == user.id})
    if len(teams) > 1:
        raise AmbiguousPersonaError(
            f"persona.user={query!r} ({user.id}) exists in several teams ({', '.join(teams)}); "
            "set persona.team."
        )
    return teams[0], user
