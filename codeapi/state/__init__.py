"""Saved Python state across calls: hot, archived, expired."""
