"""Workflows that cross layers (reconnect completion, check again, sync now, the disconnect DM, talk
to support): above diagnostics and the sync backend, below the Slack and web surfaces."""
