from __future__ import annotations

import pytest

from doppelkit.errors import PersonaError
from doppelkit.models import PersonaSelector, User, Workspace
from doppelkit.persona import resolve_persona

USERS = [
    User(id="U1", name="maya.k", display_name="maya", real_name="Maya Kowalski"),
    User(id="U2", name="sam", display_name="sam", real_name="Sam Ortiz"),
    User(id="U3", name="sam2", display_name="sam", real_name="Samantha Lee"),
    User(id="B1", name="deploybot", display_name="deploybot", is_bot=True),
]
WS = Workspace(team="T1", users=USERS)


@pytest.mark.parametrize("query", ["U1", "maya", "MAYA", "@maya", "Maya Kowalski", "maya.k", "<@U1>"])
def test_resolves_by_id_display_real_or_handle(query: str) -> None:
    assert resolve_persona(PersonaSelector(user=query), WS).id == "U1"


def test_ambiguous_lists_the_candidates_with_ids() -> None:
    with pytest.raises(PersonaError) as info:
        resolve_persona(PersonaSelector(user="sam"), WS)
    assert "ambiguous" in str(info.value) and "U2" in str(info.value) and "U3" in str(info.value)


def test_unknown_suggests_the_closest() -> None:
    with pytest.raises(PersonaError, match=r"Closest matches: U1 \(maya"):
        resolve_persona(PersonaSelector(user="mayaa"), WS)


def test_bots_are_never_personas() -> None:
    with pytest.raises(PersonaError, match="is a bot"):
        resolve_persona(PersonaSelector(user="deploybot"), WS)


def test_missing_persona_lists_people() -> None:
    with pytest.raises(PersonaError, match="No persona chosen.*U1"):
        resolve_persona(PersonaSelector(), WS)


def test_a_demo_workspace_may_name_a_default_persona() -> None:
    demo = WS.model_copy(update={"default_persona": "U1"})
    assert resolve_persona(PersonaSelector(), demo).id == "U1"
    assert resolve_persona(PersonaSelector(user="U2"), demo).id == "U2"


def test_a_team_the_source_does_not_read_is_refused() -> None:
    # /doppel train from another workspace asks for persona.team=<that workspace>: refusing it
    # here, before any file is opened, keeps that run from overwriting this team's dataset.
    with pytest.raises(PersonaError, match=r"persona.team='T2', but the source reads workspace 'T1'"):
        resolve_persona(PersonaSelector(user="maya", team="T2"), WS)
    assert resolve_persona(PersonaSelector(user="maya", team="T1"), WS).team == "T1"
