"""Who answers in a workspace, and who its members are.

* :class:`MemberDirectory` — the workspace's users (``users.list``), cached briefly, for names
  in prompts and for resolving ``/doppel`` arguments. Failures degrade to "no names", never
  to an error reply. :class:`ChannelDirectory` does the same for public channels' names.
* :func:`published_personas` — personas the engine can serve (``Engine.personas()``), plus
  those with only a dataset under ``home``, so ``persona.user=erik`` resolves offline.
* :class:`PersonaChooser` — the team's active persona from the store, falling back to the one
  named on the command line for single-workspace runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from doppelkit.artifacts import manifest_user
from doppelkit.errors import AmbiguousPersonaError, PersonaError
from doppelkit.home import Home
from doppelkit.interfaces import Engine
from doppelkit.models import SAFE_ID, Persona, PersonaSelector, User
from doppelkit.persona import select_persona
from doppelkit.pipeline import report_user
from doppelkit_slack.messages import user_from_record
from doppelkit_slack.store import PersonaRecord, PersonaStore

log = logging.getLogger("doppelkit.bolt")
DIRECTORY_TTL_S = 300.0
MAX_MEMBER_PAGES = 50


@dataclass
class Member:
    user: User
    avatar_url: str | None = None
    bot_id: str | None = None  # a bot user's ``profile.bot_id``: the B… ID its messages carry
    admin: bool = False  # a workspace admin or owner


class MemberDirectory:
    """``users.list`` per team, cached (names change rarely).

    Past ``ttl`` the cached members are still answered at once while a background thread
    fetches fresh ones, so only the very first lookup of a team waits for Slack — and the
    runtime warms the bot's own team at start-up (:meth:`warm`), so a ``/doppel`` ack does
    not wait for ``users.list`` either."""

    def __init__(self, clients: Callable[[str], WebClient], ttl: float = DIRECTORY_TTL_S) -> None:
        self.clients = clients  # the team's client (its own token)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, Member]]] = {}
        self._refreshing: set[str] = set()

    def members(self, team: str) -> dict[str, Member]:
        with self._lock:
            cached = self._cache.get(team)
        if cached is None:
            return self._refresh(team)  # nothing known yet: this lookup waits, once
        if time.monotonic() - cached[0] >= self.ttl:
            self.warm(team)
        return cached[1]

    def warm(self, team: str) -> None:
        """Fetch ``team``'s members in the background (unless a fetch is running)."""
        with self._lock:
            if team in self._refreshing:
                return
            self._refreshing.add(team)
        threading.Thread(target=self._refresh, args=(team, True), name="doppel-members", daemon=True).start()

    def _refresh(self, team: str, claimed: bool = False) -> dict[str, Member]:
        try:
            fetched = self._fetch(team)
            with self._lock:
                if fetched is not None:
                    self._cache[team] = (time.monotonic(), fetched)
                cached = self._cache.get(team)
            return cached[1] if cached else {}
        finally:
            if claimed:
                with self._lock:
                    self._refreshing.discard(team)

    def users(self, team: str) -> list[User]:
        return [m.user for m in self.members(team).values()]

    def label(self, team: str, user_id: str) -> str:
        member = self.members(team).get(user_id)
        return member.user.label if member else user_id

    def bot_names(self, team: str) -> dict[str, str]:
        """Bot ID (``B…``) → name, from the bot users, as the sources name bots in training
        (:func:`doppelkit_slack.messages.bot_names_from_users`)."""
        names: dict[str, str] = {}
        for member in self.members(team).values():
            if member.bot_id is not None:
                names.setdefault(member.bot_id, member.user.label)
        return names

    def _fetch(self, team: str) -> dict[str, Member] | None:
        members: dict[str, Member] = {}
        cursor = None
        try:
            for _ in range(MAX_MEMBER_PAGES):
                response = self.clients(team).users_list(limit=200, cursor=cursor, team_id=team)
                for raw in response.get("members") or []:
                    member = _member(raw)
                    if member is not None:
                        members[member.user.id] = member
                cursor = (response.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except (SlackApiError, SlackRequestError, OSError) as exc:
            log.warning("users.list failed (%s); names fall back to user IDs", type(exc).__name__)
            return None
        return members


class ChannelDirectory:
    """Names of public channels (``conversations.info``), cached: a ``<#C…>`` mention without
    an inline name reads ``#general`` in a prompt as it did in training, where the export's
    channels.json named it. Private channels stay IDs (training names them only with the
    source's opt-in); failures degrade to IDs."""

    def __init__(self, clients: Callable[[str], WebClient], ttl: float = DIRECTORY_TTL_S) -> None:
        self.clients = clients
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, str | None]] = {}

    def names(self, team: str, channel_ids: Iterable[str]) -> dict[str, str]:
        names: dict[str, str] = {}
        for channel_id in channel_ids:
            key = (team, channel_id)
            with self._lock:
                cached = self._cache.get(key)
            if cached is None or time.monotonic() - cached[0] >= self.ttl:
                cached = (time.monotonic(), self._fetch(team, channel_id))
                with self._lock:
                    self._cache[key] = cached
            if cached[1]:
                names[channel_id] = cached[1]
        return names

    def _fetch(self, team: str, channel_id: str) -> str | None:
        if not SAFE_ID.fullmatch(channel_id):
            return None
        try:
            channel = self.clients(team).conversations_info(channel=channel_id).get("channel") or {}
        except (SlackApiError, SlackRequestError, OSError) as exc:
            log.info(
                "conversations.info %s failed (%s); the mention stays an ID", channel_id, type(exc).__name__
            )
            return None
        if channel.get("is_private") or channel.get("is_im") or channel.get("is_mpim"):
            return None
        name = channel.get("name")
        return name if isinstance(name, str) and name else None


def _member(raw: dict[str, object]) -> Member | None:
    """A ``users.list`` record as a member, read as the sources read ``users.json`` records."""
    user = user_from_record(raw)
    if user is None or not SAFE_ID.fullmatch(user.id):
        return None
    profile = raw.get("profile")
    if not isinstance(profile, dict):
        profile = {}
    avatar = profile.get("image_192") or profile.get("image_72")
    bot_id = profile.get("bot_id")
    admin = any(raw.get(flag) is True for flag in ("is_admin", "is_owner", "is_primary_owner"))
    return Member(user, str(avatar) if avatar else None, bot_id if isinstance(bot_id, str) else None, admin)


@dataclass(frozen=True)
class PublishedPersona:
    team: str
    user_id: str
    name: str  # "" when unrecorded: the workspace directory names them then
    version: str | None  # None: a dataset exists but no adapter yet
    user: User  # the full record (handle, display and real name), to match any of them


def published_personas(home: Home, engine: Engine) -> list[PublishedPersona]:
    """Personas the engine can serve (published adapters), then those with only a dataset."""
    found: dict[tuple[str, str], PublishedPersona] = {}
    for manifest in engine.personas():
        key = (manifest.team, manifest.persona_id)
        found[key] = PublishedPersona(*key, manifest.persona_name, manifest.version, manifest_user(manifest))
    for _path, report in home.dataset_reports():
        key = (report.team, report.persona_id)
        if key not in found:
            user = report_user(report)
            found[key] = PublishedPersona(*key, report.persona_name, None, user)
    return list(found.values())


@dataclass(frozen=True)
class CommandLinePersona:
    """``persona.user=`` as resolved at start: ``team`` is None when it could not be pinned."""

    user_id: str | None
    name: str  # "" until known
    team: str | None
    query: str


def resolve_command_line_persona(
    selector: PersonaSelector, home: Home, engine: Engine
) -> CommandLinePersona | None:
    """Resolve ``persona.user`` against what is published under home, without the network."""
    if not selector.user:
        return None
    query = selector.user.strip()
    if query.startswith("<@") and query.endswith(">"):
        query = query[2:-1].split("|", 1)[0]
    candidates = [p for p in published_personas(home, engine) if selector.team in (None, p.team)]
    try:  # the same matching as ingest: ID, display name, real name or handle
        team, user = select_persona(query, [(p.team, p.user) for p in candidates], "under home")
    except AmbiguousPersonaError:
        raise
    except PersonaError:
        pass  # not trained here yet: resolved against each team's members later
    else:
        chosen = next(p for p in candidates if (p.team, p.user_id) == (team, user.id))
        return CommandLinePersona(chosen.user_id, chosen.name, chosen.team, query)
    if SAFE_ID.fullmatch(query) and query[:1] in "UW" and query.upper() == query:
        return CommandLinePersona(query, "", selector.team, query)  # name looked up per team
    return CommandLinePersona(None, "", selector.team, query)  # a name: resolved per team later


@dataclass(frozen=True)
class Answering:
    """The persona that answers in a team, and its store record if any."""

    persona: Persona
    record: PersonaRecord | None
    trained: bool


class PersonaChooser:
    def __init__(
        self,
        store: PersonaStore,
        engine: Engine,
        directory: MemberDirectory,
        command_line: CommandLinePersona | None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.directory = directory
        self.command_line = command_line

    def adopt_command_line_persona(self) -> None:
        """``persona.user=`` pinned to a team: record it as that team's active persona."""
        chosen = self.command_line
        if chosen is None or chosen.team is None or chosen.user_id is None:
            return
        version = self.engine.current_version(chosen.team, chosen.user_id)
        if version is not None:
            self.store.upsert_trained(chosen.team, chosen.user_id, chosen.name, version)
        self.store.set_active(chosen.team, chosen.user_id)

    def answering(self, team: str) -> Answering | None:
        """Who answers mentions in ``team`` right now, or None if nobody is set up."""
        user_id = self.store.active_user(team)
        name = None
        chosen = self.command_line
        if user_id is None and chosen is not None and chosen.team in (None, team):
            # The persona named on the command line answers where no one was chosen with
            # /doppel switch: in its own team only (pinned), or — not yet trained anywhere, a
            # name — as the member of this team it names.
            user_id = chosen.user_id
            if user_id is None:
                user_id = self._find_by_name(team, chosen.query)
                if user_id is None:
                    return None
            name = chosen.name
        if user_id is None:
            return None
        record = self.store.get(team, user_id)
        label = (record.name if record else None) or name or self.directory.label(team, user_id)
        persona = Persona(team=team, user=User(id=user_id, display_name=label))
        trained = self.engine.current_version(team, user_id) is not None
        return Answering(persona, record, trained)

    def _find_by_name(self, team: str, query: str) -> str | None:
        from doppelkit.errors import PersonaError
        from doppelkit.persona import find_user

        try:
            return find_user(query, self.directory.users(team)).id
        except PersonaError:
            return None
