"""``codeapi keys create|list|disable|enable|revoke``: the admin API's key operations from a shell on the host.

Works on the metadata store directly (SQLite under DATA_DIR, or the configured Redis), so it needs
no running server and no master key: whoever can read the configuration is the administrator.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import UTC, datetime

from codeapi.auth.managed import environment_records, new_key, new_record, record_json
from codeapi.config import Settings
from codeapi.observability.security import admin_event
from codeapi.storage import open_metadata
from codeapi.storage.metadata.base import ApiKeyRecord, MetadataStore, RateLimits

WINDOW_OPTIONS = ("per_second", "per_minute", "hourly", "daily", "monthly")
MIN_HASH_PREFIX = 8


class KeyCommandError(Exception):
    """A key the command names is unknown, ambiguous or read-only."""


def add_arguments(keys: argparse.ArgumentParser) -> None:
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a key; it is printed once, only its hash is stored")
    create.add_argument("name")
    for window in WINDOW_OPTIONS:
        create.add_argument(f"--{window.replace('_', '-')}", type=positive, dest=window, help="request limit")
    create.add_argument("--metadata", action="append", default=[], metavar="NAME=VALUE", help="repeatable")
    listing = actions.add_parser("list", help="managed keys and the environment's, without secrets")
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    for action, text in (("disable", "refuse the key"), ("enable", "accept it again"), ("revoke", "delete it")):
        actions.add_parser(action, help=text).add_argument(
            "key_hash", help=f"its hash (or a unique prefix, ≥ {MIN_HASH_PREFIX})"
        )


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


async def run(settings: Settings, args: argparse.Namespace) -> int:
    metadata = await open_metadata(settings.storage, settings.redis)
    try:
        if args.action == "create":
            await create(metadata, args)
        elif args.action == "list":
            await show(metadata, settings, args.json)
        else:
            await change(metadata, args.action, args.key_hash)
    except KeyCommandError as error:
        sys.stderr.write(f"codeapi keys: {error}\n")
        return 1
    finally:
        await metadata.close()
    return 0


async def create(metadata: MetadataStore, args: argparse.Namespace) -> None:
    fields = dict(item.partition("=")[::2] for item in args.metadata)
    limits = RateLimits(**{window: getattr(args, window) for window in WINDOW_OPTIONS})
    key = new_key()
    record = new_record(key, args.name, limits, fields)
    await metadata.put_key(record)
    sys.stdout.write(f"{key}\n(shown once; stored as {record.key_hash})\n")
    sys.stdout.flush()  # the key comes first, before the audit line the logger may print
    admin_event("admin.key_created", key_prefix=record.key_prefix, name=record.name, client_ip="cli")


async def show(metadata: MetadataStore, settings: Settings, as_json: bool) -> None:
    records = [*environment_records(settings.auth, datetime.now(UTC)), *await metadata.list_keys()]
    if as_json:
        sys.stdout.write(json.dumps([record_json(record) for record in records], indent=2) + "\n")
        return
    sys.stdout.write(f"{'HASH':<14}{'PREFIX':<13}{'SOURCE':<13}{'ENABLED':<9}{'USES':>8}  NAME\n")
    for record in records:
        sys.stdout.write(
            f"{record.key_hash[:12]:<14}{record.key_prefix:<13}{record.source:<13}"
            f"{'yes' if record.enabled else 'no':<9}{record.usage_count:>8}  {record.name}\n"
        )


async def change(metadata: MetadataStore, action: str, given: str) -> None:
    record = await find(metadata, given)
    if action == "revoke":
        await metadata.delete_key(record.key_hash)
    else:
        if not await metadata.update_key(replace(record, enabled=action == "enable")):
            raise KeyCommandError(f"{record.key_prefix} was revoked meanwhile")
    sys.stdout.write(f"{action}d {record.key_prefix} ({record.name})\n")
    sys.stdout.flush()
    admin_event(f"admin.key_{action}d", key_prefix=record.key_prefix, client_ip="cli")


async def find(metadata: MetadataStore, given: str) -> ApiKeyRecord:
    if len(given) < MIN_HASH_PREFIX:
        raise KeyCommandError(f"give at least {MIN_HASH_PREFIX} characters of the key's hash")
    matches = [record for record in await metadata.list_keys() if record.key_hash.startswith(given.lower())]
    if not matches:
        raise KeyCommandError(f"no managed key has a hash starting with {given} (environment keys are read-only)")
    if len(matches) > 1:
        raise KeyCommandError(f"{given} matches {len(matches)} keys: give more of the hash")
    return matches[0]
