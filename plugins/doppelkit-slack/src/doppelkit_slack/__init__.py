"""doppelkit-slack: Slack sources, the fake Slack server and the sample workspace."""
