"""Where threads come from: the two first-party sources and what only they use.

* :mod:`.export` — the ``slack_export`` source (workspace exports, the default) and the bundled
  sample workspace; :mod:`.reader` — safe, low-level reading of an export (zip or folder);
* :mod:`.api` — the ``slack`` Web API source; :mod:`.scraper` — paging one channel's history
  and threads; :mod:`.checkpoint` — the resumable scrape journal under ``home/state/scrape``.

Both sources turn raw Slack messages into threads with :mod:`doppelkit_slack.messages`, the
parser the bot uses too; the API source calls Slack through :mod:`doppelkit_slack.webclient`,
which the bot shares. Nothing here imports the bot.
"""
