"""The container lane: the compose stack on this host's Docker (cgroup v1) serves the flow of
tests/lanes/compose_flow.py."""

from tests.lanes.compose_flow import *  # noqa: F403 (the flow's tests, collected with this module's fixtures)
