"""``app_uninstalled`` and ``tokens_revoked``: delete a workspace's data once the app is gone.

Slack sends ``tokens_revoked`` whenever *any* token of the app in a workspace is revoked —
also a single user's OAuth token (``tokens.oauth``). Only the revocation of our bot token
(``tokens.bot`` naming our bot) or an uninstall ends the app's life in the workspace; anything
else is logged and ignored. Deleting runs on a worker after the ack: removing adapters and
corpora can take longer than Slack's 3 s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from doppelkit_slack.bolt.forgetting import Forgetting
from doppelkit_slack.store import PersonaStore
from doppelkit_slack.webclient import AUTH_ERRORS

if TYPE_CHECKING:
    from slack_sdk.oauth.installation_store import InstallationStore

log = logging.getLogger("doppelkit.bolt")


class WorkspaceEraser:
    def __init__(
        self,
        store: PersonaStore,
        forgetting: Forgetting,
        clients: Callable[[str], WebClient],
        *,
        installations: InstallationStore | None = None,
        stop_training: Callable[[str, Callable[[], None]], int] | None = None,
        erase_rows: list[Callable[[str], None]] | None = None,
    ) -> None:
        self.store = store
        self.forgetting = forgetting
        self.clients = clients
        self.installations = installations  # OAuth: the installs and bot tokens per team
        self.stop_training = stop_training  # (team, cleanup): stop its runs, clean up after them
        self.erase_rows = list(erase_rows or [])  # other tables keyed by team (consents)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="doppel-erase")
        self._our_bot: set[str] = set()  # our bot's user ID and bot ID, once known
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()

    def remember_bot(self, bot_user_id: str | None, bot_id: str | None) -> None:
        """Every authorised request tells us who our bot is; revocations may not (no auth.test)."""
        ids = {i for i in (bot_user_id, bot_id) if i}
        if ids and not ids <= self._our_bot:
            with self._lock:
                self._our_bot |= ids

    def app_uninstalled(self, team: str) -> None:
        log.info("workspace %s uninstalled the app; deleting its data", team)
        self._submit(self.erase, team)

    def tokens_revoked(self, team: str, event: dict[str, Any]) -> None:
        tokens = event.get("tokens") if isinstance(event.get("tokens"), dict) else {}
        assert isinstance(tokens, dict)
        bots = [b for b in tokens.get("bot") or [] if isinstance(b, str)]
        users = [u for u in tokens.get("oauth") or [] if isinstance(u, str)]
        self._submit(self._after_revocation, team, bots, users)

    def _after_revocation(self, team: str, revoked_bots: list[str], revoked_users: list[str]) -> None:
        if self._is_our_bot(team, revoked_bots):
            log.info("workspace %s revoked our bot token; deleting its data", team)
            self.erase(team)
            return
        log.info("workspace %s revoked tokens that are not our bot's; keeping its data", team)
        if self.installations is not None:
            # The installer's user token: its installation row goes, the bot row (and the bot) stays.
            for user in revoked_users:
                self.installations.delete_installation(enterprise_id=None, team_id=team, user_id=user)

    def _is_our_bot(self, team: str, revoked_bots: list[str]) -> bool:
        if not revoked_bots:
            return False  # only user tokens (tokens.oauth) were revoked
        with self._lock:
            known = set(self._our_bot)
        if self.installations is not None:
            bot = self.installations.find_bot(enterprise_id=None, team_id=team)
            known |= {i for i in (bot.bot_user_id, bot.bot_id) if i} if bot else set()
        if not known:
            try:
                answer = self.clients(team).auth_test()
                known = {str(answer[k]) for k in ("user_id", "bot_id") if answer.get(k)}
                self.remember_bot(answer.get("user_id"), answer.get("bot_id"))
            except SlackApiError as exc:
                # Our own token no longer works: the revoked bot token was ours.
                return str(exc.response.get("error")) in AUTH_ERRORS
            except (SlackRequestError, OSError):
                log.warning("could not tell whether the revoked bot token was ours; keeping the data")
                return False
        return bool(known & set(revoked_bots))

    def erase(self, team: str) -> None:
        """Stop the team's training runs, delete every file any plugin keeps about ``team``,
        then its store rows (and, once a stopped run has ended, whatever it wrote meanwhile)."""
        if self.stop_training is not None:
            self.stop_training(team, lambda: self._erase_data(team))
        self._erase_data(team)
        if self.installations is not None:  # last: until now a retry could still authorise
            self.installations.delete_all(enterprise_id=None, team_id=team)

    def _erase_data(self, team: str) -> None:
        for record in self.store.list(team):  # a plugin may key some files by person only
            self.forgetting.person(team, record.user_id)
        self.forgetting.team(team)
        self.store.delete_team(team)
        for erase in self.erase_rows:
            erase(team)

    def _submit(self, work: Any, *args: Any) -> None:
        future = self.executor.submit(self._logged, work, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _logged(self, work: Any, *args: Any) -> None:
        try:
            work(*args)
        except Exception:
            log.exception("deleting workspace data failed")

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    @property
    def pending(self) -> list[Future[None]]:
        with self._lock:
            return list(self._pending)

    def shutdown(self, wait: bool = True) -> None:
        self.executor.shutdown(wait=wait)
