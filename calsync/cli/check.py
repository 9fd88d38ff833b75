"""`calsync check`: what is missing or wrong in the settings, before the first run (one line per
finding, exit 0 when ready, 1 otherwise). The findings are `calsync.cli.readiness`'s, imported when
the command runs, so the root of the command line stays light."""

from __future__ import annotations

import typer


def check_command(
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON on stdout."),
) -> None:
    """Say what is missing or wrong in the settings before the first run; exit 1 if anything is."""
    import json
    from dataclasses import asdict

    from pydantic import ValidationError

    from calsync.cli.readiness import check_settings, invalid_settings
    from calsync.settings import Settings

    sandbox: bool | None = None
    try:
        settings = Settings()
    except ValidationError as error:
        findings = invalid_settings(error)
    else:
        sandbox = settings.sandbox_mode
        findings = check_settings(settings)
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warn" for f in findings)
    if as_json:
        record = {"ready": errors == 0, "sandbox": sandbox, "findings": [asdict(f) for f in findings]}
        typer.echo(json.dumps(record, ensure_ascii=False))
    else:
        for finding in findings:
            typer.echo(finding.line())
        plural = "s" if warnings != 1 else ""
        if errors:
            typer.echo(f"not ready: {errors} error{'s' if errors != 1 else ''}, {warnings} warning{plural}")
        else:
            typer.echo(f"ready ({warnings} warning{plural})")
    if errors:
        raise typer.Exit(1)
