"""test_rate_limited.py's app with a master key: one per module, on each backend, as tests/admin has it."""

from tests.admin.conftest import backend, service  # noqa: F401 - fixtures
