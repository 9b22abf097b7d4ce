"""``lockcore users`` and ``lockcore catalog``: who may call, and what can be locked."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import FIRST_USER_HINT, CliError, redis_for, stores, table


def _with_users(args: argparse.Namespace, action: Any) -> int:
    from ..identity import UserError

    with redis_for(args) as (client, settings):
        try:
            return int(action(stores(client, settings["KEY_PREFIX"])[0]))
        except UserError as exc:
            raise CliError(str(exc)) from exc


def users_add(args: argparse.Namespace) -> int:
    from ..identity import User

    def run(users: Any) -> int:
        print(users.create(User(args.id, args.name, args.email, frozenset(args.role))).key)
        return 0

    return _with_users(args, run)


def users_list(args: argparse.Namespace) -> int:
    def run(users: Any) -> int:
        records = users.records()
        rows = [
            {
                "id": r.user.id,
                "name": r.user.name,
                "email": r.user.email,
                "roles": sorted(r.user.roles),
                "key_ids": list(r.key_ids),
            }
            for r in records
        ]
        if args.json:
            print(json.dumps(rows, indent=2))
        elif rows:
            print(
                table(
                    [
                        ["ID", "NAME", "EMAIL", "ROLES", "KEY IDS"],
                        *(
                            [
                                r["id"],
                                r["name"],
                                r["email"],
                                ",".join(r["roles"]),
                                ",".join(r["key_ids"]),
                            ]
                            for r in rows
                        ),
                    ]
                )
            )
        else:
            print(FIRST_USER_HINT)
        return 0

    return _with_users(args, run)


def users_issue_key(args: argparse.Namespace) -> int:
    def run(users: Any) -> int:
        print(users.issue_key(args.id).key)
        return 0

    return _with_users(args, run)


def users_revoke_key(args: argparse.Namespace) -> int:
    key = args.key
    if key == "-":
        key = sys.stdin.readline().strip()

    def run(users: Any) -> int:
        revoked = users.revoke(args.id, key_id=args.key_id, key=key, every=args.all)
        print(
            f"revoked {len(revoked)} key(s) of {args.id}"
            + (f": {', '.join(revoked)}" if revoked else "")
        )
        return 0

    return _with_users(args, run)


def catalog_load(args: argparse.Namespace) -> int:
    from ..catalog import CatalogError, load_file

    try:
        doc = load_file(args.file)
    except (CatalogError, OSError) as exc:
        print(f"lockcore: {args.file}: {exc}", file=sys.stderr)
        return 2
    with redis_for(args) as (client, settings):
        users, catalog = stores(client, settings["KEY_PREFIX"])
        counts = catalog.replace(doc, users)
        print(", ".join(f"{n} {kind}" for kind, n in counts.items()))
    return 0
