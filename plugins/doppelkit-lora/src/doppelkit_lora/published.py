"""The personas that have a published adapter under home, and finding one by ID or name.

Serving does not need the workspace export: each version's manifest carries the team, the
persona's ID and display name, so ``doppelkit chat persona.user=maya`` works from home alone.
"""

from __future__ import annotations

import contextlib

from doppelkit.errors import AmbiguousPersonaError, PersonaError
from doppelkit.home import Home
from doppelkit.models import AdapterManifest, Persona, PersonaSelector, User, validate_safe_id
from doppelkit.persona import select_persona
from doppelkit_lora.artifacts import ArtifactError, current_version


def published_personas(home: Home) -> list[AdapterManifest]:
    """The current manifest of every persona with a published adapter, by team then ID."""
    root = home.root / "adapters"
    if not root.is_dir():
        return []
    found = []
    for team_dir in sorted(root.iterdir()):
        for user_dir in sorted(team_dir.iterdir()) if team_dir.is_dir() else []:
            with contextlib.suppress(ValueError, ArtifactError):  # stray or unsafe names, broken versions
                validate_safe_id(team_dir.name, "team")
                validate_safe_id(user_dir.name, "user")
                published = current_version(home, team_dir.name, user_dir.name)
                if published is not None:
                    found.append(published.manifest)
    return found


def describe(manifest: AdapterManifest) -> str:
    name = manifest.persona_name or manifest.persona_id
    return f"{name} ({manifest.persona_id}, team {manifest.team}, {manifest.version})"


def find_published_persona(home: Home, selector: PersonaSelector) -> Persona:
    """The persona ``selector`` names (ID, display name, real name or handle), among the trained ones."""
    trained = published_personas(home)
    if not selector.user:
        listed = "; ".join(describe(m) for m in trained) or "none yet"
        raise PersonaError(f"No persona chosen: set persona.user to one of the trained personas ({listed}).")
    query = selector.user.strip()
    if not trained:
        raise PersonaError(
            f"No persona has been trained under {home.root} yet: run `doppelkit persona.user={query}` first."
        )
    in_team = [m for m in trained if selector.team in (None, m.team)]
    if not in_team:
        listed = "; ".join(describe(m) for m in trained)
        raise PersonaError(f"No persona is trained in team {selector.team}. Trained personas: {listed}.")
    entries = [(m.team, manifest_user(m)) for m in in_team]
    try:
        team, user = select_persona(query, entries, "among the trained personas")
    except AmbiguousPersonaError:
        raise
    except PersonaError as exc:
        listed = "; ".join(describe(m) for m in trained)
        raise PersonaError(
            f"No trained persona matches persona.user={query!r}. Trained personas: {listed}. "
            f"To train one: `doppelkit persona.user={query}`. ({exc})"
        ) from None
    return Persona(team=team, user=user)


def manifest_user(manifest: AdapterManifest) -> User:
    """The persona's user record (older manifests carry only the ID and display label)."""
    return manifest.persona_user or User(id=manifest.persona_id, display_name=manifest.persona_name)
