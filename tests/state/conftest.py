"""The storage suites' real backends (SQLite and Redis metadata, local and S3 blobs) for state tests."""

from tests.storage.conftest import blobs, metadata, seaweed, shared_redis

__all__ = ["blobs", "metadata", "seaweed", "shared_redis"]
