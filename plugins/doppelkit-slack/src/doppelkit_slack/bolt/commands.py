"""The ``/doppel`` slash command: train, list, switch, status, forget, help.

Every subcommand answers within the ack (an ephemeral reply to whoever typed it); ``train``
only starts the work and reports progress in the channel as it goes.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass

from doppelkit.errors import PersonaError
from doppelkit.home import Home
from doppelkit.interfaces import Engine
from doppelkit.models import User
from doppelkit.persona import candidates, find_user
from doppelkit_slack.bolt.consent import ConsentGate
from doppelkit_slack.bolt.forgetting import Forgetting
from doppelkit_slack.bolt.permissions import Permissions
from doppelkit_slack.bolt.personas import MemberDirectory, PersonaChooser, published_personas
from doppelkit_slack.bolt.training import TrainingNotStarted, TrainingRunner
from doppelkit_slack.store import FAILED, SCRAPING, TRAINED, TRAINING, PersonaRecord, PersonaStore, StoreError

HELP = """*doppelkit* — a bot that writes like someone on your team.
• `/doppel train @someone` — learn how they write (reads the workspace and trains; progress is posted here)
• `/doppel list` — personas in this workspace, their state and version
• `/doppel switch @someone` — make a trained persona the one that answers mentions
• `/doppel status [@someone]` — what the bot is doing (or one persona's training state)
• `/doppel forget @someone` — delete their dataset, models and cached data (shared data: with the last one)
• `/doppel forget me` (or `/doppel stop`) — delete everything about you (and stop a training of you)
• `/doppel help` — this message
Mention me in a thread to get a reply from the active persona."""


@dataclass(frozen=True)
class Invocation:
    team: str
    channel: str
    user_id: str
    response_url: str = ""  # where the outcome of slow work is reported (5 uses, 30 minutes)


class DoppelCommands:
    def __init__(
        self,
        *,
        store: PersonaStore,
        engine: Engine,
        directory: MemberDirectory,
        chooser: PersonaChooser,
        home: Home,
        forgetting: Forgetting,
        training: TrainingRunner,
        persona_limit: int,
        training_limit: int | None = None,
        permissions: Permissions | None = None,
        consent: ConsentGate | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.directory = directory
        self.chooser = chooser
        self.home = home
        self.forgetting = forgetting
        self.training = training
        self.persona_limit = persona_limit
        self.permissions = permissions or Permissions()
        self.consent = consent  # None: train without asking (as frontend.consent=none, silently)
        self.training_limit = training_limit  # frontend.training_limit (runs at once per team)

    def handle(self, text: str, invocation: Invocation) -> str:
        verb, _, argument = (text or "").strip().partition(" ")
        verb, argument = verb.casefold(), argument.strip()
        handlers = {
            "train": self.train,
            "list": self.list,
            "switch": self.switch,
            "status": self.status,
            "forget": self.forget,
            "stop": self.stop,
        }
        if verb in ("", "help"):
            return HELP
        if verb not in handlers:
            return f"I don't know `{verb}`.\n\n{HELP}"
        return handlers[verb](argument, invocation)

    # --- users ------------------------------------------------------------------------------------

    def resolve(self, query: str, team: str) -> User | str:
        """A member by ID, mention (``<@U1|ann>``) or name; otherwise the reply explaining why not."""
        query = query.strip()
        if not query:
            return "Tell me who, e.g. `@ann`, a name or a user ID."
        if query.startswith("<@") and query.endswith(">"):
            query = query[2:-1].split("|", 1)[0]
        users = self.directory.users(team)
        known = {u.id for u in users}
        # People the store knows (trained earlier) stay resolvable even if users.list fails.
        users += [
            User(id=r.user_id, display_name=r.name) for r in self.store.list(team) if r.user_id not in known
        ]
        try:
            user = find_user(query, users)
        except PersonaError:
            return self._no_match(query, users)
        if user.is_bot:
            return f"{user.label} is a bot; personas are people."
        return user

    def refused(self, verb: str, inv: Invocation, target: User) -> str | None:
        """Why ``inv``'s sender may not run ``verb`` about ``target`` (``frontend.permissions``)."""
        member = self.directory.members(inv.team).get(inv.user_id)
        return self.permissions.refusal(verb, inv.user_id, target.id, is_admin=bool(member and member.admin))

    def _no_match(self, query: str, users: list[User]) -> str:
        folded = " ".join(query.casefold().lstrip("@").split())
        for field in ("display_name", "real_name", "name"):
            same = [u for u in users if " ".join(getattr(u, field).casefold().split()) == folded]
            if len(same) > 1:
                listed = "; ".join(
                    f"{u.label} ({u.id}, {u.real_name or u.name or 'no other name'})" for u in same
                )
                return (
                    f"“{query}” is ambiguous: {len(same)} people match ({listed}). "
                    f"Use their user ID, e.g. `/doppel … {same[0].id}`."
                )
        if not users:
            return f"I couldn't look up this workspace's members to find “{query}”. Try their user ID."
        close = candidates(query, users)
        hint = " Did you mean " + ", ".join(f"{u.label} ({u.id})" for u in close) + "?" if close else ""
        return f"No one in this workspace matches “{query}”.{hint}"

    # --- subcommands --------------------------------------------------------------------------------

    def train(self, argument: str, inv: Invocation) -> str:
        user = self.resolve(argument, inv.team)
        if isinstance(user, str):
            return user
        if refusal := self.refused("train", inv, user):
            return refusal
        try:
            if self.consent is not None:
                return self.consent.train(inv.team, inv.channel, inv.user_id, user, inv.response_url)
            self.start_training(inv.team, inv.channel, user, inv.user_id, inv.response_url)
        except (StoreError, TrainingNotStarted) as exc:
            return str(exc)
        return f"Started training {user.label}. I'll post progress in this channel."

    def start_training(
        self, team: str, channel: str, user: User, requested_by: str, response_url: str = ""
    ) -> None:
        self.training.start(
            team,
            channel,
            user,
            requested_by=requested_by,
            limit=self.persona_limit,
            response_url=response_url,
            training_limit=self.training_limit,
        )

    def list(self, argument: str, inv: Invocation) -> str:
        records = {r.user_id: r for r in self.store.list(inv.team)}
        published = {p.user_id: p for p in published_personas(self.home, self.engine) if p.team == inv.team}
        active = self.store.active_user(inv.team)
        if not records and not published:
            return "No personas in this workspace yet. Start one with `/doppel train @someone`."
        lines = []
        for user_id in sorted(
            set(records) | set(published), key=lambda u: _name(records, published, u).casefold()
        ):
            record = records.get(user_id)
            version = self.engine.current_version(inv.team, user_id)
            state = record.state if record else (TRAINED if version else "not trained")
            detail = f"{state}, {version}" if version else state
            marker = " — *active*" if user_id == active else ""
            lines.append(f"• {_name(records, published, user_id)} ({user_id}): {detail}{marker}")
        return "Personas in this workspace:\n" + "\n".join(lines)

    def switch(self, argument: str, inv: Invocation) -> str:
        user = self.resolve(argument, inv.team)
        if isinstance(user, str):
            return user
        if refusal := self.refused("switch", inv, user):
            return refusal
        version = self.engine.current_version(inv.team, user.id)
        if version is None:
            return f"{user.label} has no trained model yet. Train one first: `/doppel train {user.id}`."
        self.store.upsert_trained(inv.team, user.id, user.label, version)
        self.store.set_active(inv.team, user.id)
        return f"Now answering as {user.label} ({version})."

    def status(self, argument: str, inv: Invocation) -> str:
        if not argument:
            answering = self.chooser.answering(inv.team)
            records = self.store.list(inv.team)
            running = [r for r in records if r.state in (SCRAPING, TRAINING)]
            who = (
                self._describe(answering.persona.team, answering.persona.id, answering.persona.label)
                if answering
                else "nobody (set one with `/doppel switch`)"
            )
            lines = [f"Answering as: {who}.", f"Personas: {len(records)} of {self.persona_limit}."]
            lines += [f"• {r.name} is {r.state} (since {r.updated_at:%Y-%m-%d %H:%M} UTC)" for r in running]
            return "\n".join(lines)
        user = self.resolve(argument, inv.team)
        if isinstance(user, str):
            return user
        return self._describe(inv.team, user.id, user.label)

    def _describe(self, team: str, user_id: str, label: str | None = None) -> str:
        record = self.store.get(team, user_id)
        version = self.engine.current_version(team, user_id)
        name = label or (record.name if record else user_id)
        if record is None:
            return f"{name}: {'trained, ' + version if version else 'not trained'}"
        text = f"{name}: {record.state} (since {record.updated_at:%Y-%m-%d %H:%M} UTC)"
        if version:
            text += f", serving {version}"
        if record.error:
            text += f" — {record.error}"
        return text

    def forget(self, argument: str, inv: Invocation) -> str:
        myself = argument.strip().casefold() in ("me", "myself")
        user = self.resolve(inv.user_id if myself else argument, inv.team)
        if isinstance(user, str):
            return user
        if refusal := self.refused("forget", inv, user):
            return refusal
        record = self.store.get(inv.team, user.id)
        running = record is not None and record.state in (SCRAPING, TRAINING)
        if running and user.id != inv.user_id:
            return f"{user.label} is being trained right now; forget them once the run has finished."
        if running:  # the person withdraws: their run stops, and what it writes goes too
            team, user_id = inv.team, user.id
            self.training.cancel(team, lambda: self.forget_person(team, user_id), user=user_id)
        removed, in_store = self.erase_person(inv.team, user.id)
        if self.consent is not None:  # training them again needs their consent again
            self.consent.consents.revoke(inv.team, user.id, by=inv.user_id)
        if not removed and not in_store:
            return f"There was nothing to forget about {user.label}."
        return f"Forgot {user.label}: deleted {', '.join(removed) or 'their records'}."

    def forget_person(self, team: str, user_id: str) -> None:
        self.erase_person(team, user_id)

    def stop(self, argument: str, inv: Invocation) -> str:
        """``/doppel stop``: the person withdraws — ``forget me`` under the name people reach for."""
        if argument:
            return "`/doppel stop` is about you only: it deletes everything about you. (No one else.)"
        return self.forget("me", inv)

    def erase_person(self, team: str, user_id: str) -> tuple[builtins.list[str], bool]:
        """Everything about one person (every plugin's files, the store's rows); with the last
        persona of the workspace, its shared corpus and base models too."""
        removed = self.forgetting.person(team, user_id)
        in_store = self.store.delete(team, user_id)
        # A failed run made nothing (its half-made files were never kept): it does not count.
        remaining = [r for r in self.store.list(team) if r.state != FAILED]
        if not remaining and not self.forgetting.people_left(team):
            # The last persona of the workspace: its shared corpus and base models go too.
            removed += [what for what in self.forgetting.team(team) if what not in removed]
        return removed, in_store


def _name(records: Mapping[str, PersonaRecord], published: Mapping[str, object], user_id: str) -> str:
    if user_id in records:
        return records[user_id].name
    return str(getattr(published.get(user_id), "name", "") or user_id)
