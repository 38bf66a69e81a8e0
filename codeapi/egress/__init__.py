"""Sandbox network access: the allowlist, the egress proxy process and its gateway, the skill-deps cache."""
