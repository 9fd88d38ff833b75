"""HTTP: the Slack endpoint, health, and (later) the reconnect and report pages."""
