"""The Slack bot: listeners (thin) and the service behind them."""
