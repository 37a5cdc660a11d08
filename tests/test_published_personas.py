"""Serving finds a trained persona by the same names ingest accepted (``engine.personas()``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from doppelkit.artifacts import find_published_persona
from doppelkit.errors import AmbiguousPersonaError, PersonaError
from doppelkit.home import Home
from doppelkit.models import AdapterManifest, PersonaSelector, User


def manifest(team: str, user: User) -> AdapterManifest:
    return AdapterManifest(
        version="v1", team=team, persona_id=user.id, persona_name=user.label, persona_user=user,
        base_model="tiny", trainer="lora", formatter="chat", template_hash="t", dataset_hash="d",
        doppelkit_version="0",
    )  # fmt: skip


ERIK = User(id="U2", name="erik", display_name="Erik L", real_name="Erik Lindqvist")
MAYA = User(id="U1", name="maya.okafor", display_name="maya", real_name="Maya Okafor")


TRAINED = [manifest("T1", MAYA), manifest("T1", ERIK), manifest("T2", ERIK)]


@pytest.mark.parametrize("query", ["erik", "Erik Lindqvist", "erik l", "U2"])
def test_any_name_finds_the_persona(query: str, tmp_path: Path) -> None:
    persona = find_published_persona(TRAINED, PersonaSelector(user=query, team="T1"), Home.at(tmp_path))
    assert (persona.team, persona.id, persona.user.real_name) == ("T1", "U2", "Erik Lindqvist")


def test_one_person_in_two_teams_needs_the_team(tmp_path: Path) -> None:
    with pytest.raises(AmbiguousPersonaError, match="several teams"):
        find_published_persona(TRAINED, PersonaSelector(user="erik"), Home.at(tmp_path))


def test_unknown_lists_closest_trained(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="No trained persona matches.*Closest matches: U1"):
        find_published_persona(TRAINED, PersonaSelector(user="mayaa"), Home.at(tmp_path))


def test_no_persona_chosen_lists_the_trained_ones(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match=r"set persona.user to one of the trained personas \(maya \(U1"):
        find_published_persona(TRAINED, PersonaSelector(), Home.at(tmp_path))


def test_nothing_trained_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match=r"run `doppelkit persona.user=maya` first"):
        find_published_persona([], PersonaSelector(user="maya"), Home.at(tmp_path))
