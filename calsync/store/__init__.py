"""The surfaces' storage, behind functions: stored answers, event and click claims, audit, report
views. Handlers and pages call these; none of them writes a query of its own."""
