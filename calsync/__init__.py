"""calsync: live calendar-sync diagnostics for SalesPartner reps, in Slack."""
