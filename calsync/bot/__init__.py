"""The Slack surface: Bolt middleware, one listener module per surface, the work after the ack."""
