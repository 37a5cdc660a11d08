"""doppelkit-slack: Slack sources (``sources/``), the Slack bot (``bolt/``), the message parser
they share (``messages``), the bundled sample workspace (``data/``) and test tooling
(``testing/``)."""
