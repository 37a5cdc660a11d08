"""`doppelkit chat` finds a trained persona by the same names ingest accepted."""

from __future__ import annotations

import pytest

from doppelkit.errors import AmbiguousPersonaError, PersonaError
from doppelkit.home import Home
from doppelkit.models import AdapterManifest, PersonaSelector, User
from doppelkit_lora import published


def manifest(team: str, user: User) -> AdapterManifest:
    return AdapterManifest(
        version="v1", team=team, persona_id=user.id, persona_name=user.label, persona_user=user,
        base_model="tiny", trainer="lora", formatter="chat", template_hash="t", dataset_hash="d",
        doppelkit_version="0",
    )  # fmt: skip


ERIK = User(id="U2", name="erik", display_name="Erik L", real_name="Erik Lindqvist")
MAYA = User(id="U1", name="maya.okafor", display_name="maya", real_name="Maya Okafor")


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> None:
    found = [manifest("T1", MAYA), manifest("T1", ERIK), manifest("T2", ERIK)]
    monkeypatch.setattr(published, "published_personas", lambda home: found)


@pytest.mark.parametrize("query", ["erik", "Erik Lindqvist", "erik l", "U2"])
def test_any_name_finds_the_persona(trained: None, query: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    persona = published.find_published_persona(Home.at(tmp_path), PersonaSelector(user=query, team="T1"))
    assert (persona.team, persona.id, persona.user.real_name) == ("T1", "U2", "Erik Lindqvist")


def test_one_person_in_two_teams_needs_the_team(trained: None, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AmbiguousPersonaError, match="several teams"):
        published.find_published_persona(Home.at(tmp_path), PersonaSelector(user="erik"))


def test_unknown_lists_closest_trained(trained: None, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PersonaError, match="No trained persona matches.*Closest matches: U1"):
        published.find_published_persona(Home.at(tmp_path), PersonaSelector(user="mayaa"))
