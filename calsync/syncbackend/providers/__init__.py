"""Calendar providers: one protocol (`base.py`), one implementation per service."""
