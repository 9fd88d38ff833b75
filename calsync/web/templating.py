"""Jinja2 for the server-rendered pages: autoescaped, no JavaScript needed anywhere."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def make_templates() -> Jinja2Templates:
    """Autoescaped; the `code` filter shows a sentence's `` `code` `` as <code> (all else escaped)."""
    from calsync.render.html import inline_code

    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.autoescape = True
    templates.env.filters["code"] = inline_code
    return templates
