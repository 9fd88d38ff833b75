"""Renderers: one per surface, all from the same `Answer`."""
