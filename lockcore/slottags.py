"""The hash tag of each Redis Cluster hash slot: its generator, and the table lockcore ships.

A slot's own keys (its directory, see docs/redis-layout.md) carry the tag ``#<n>``: the
smallest ``n >= 0`` whose text ``#<n>`` hashes to the slot, by the CRC16 Redis Cluster
hashes keys with. All 16384 slots are found by n = 167975, so the table ships beside this
module as package data (``slot-tags.txt``, which lockcore.keys reads), generated with::

    python -m lockcore.slottags > lockcore/slot-tags.txt

and ``python -m lockcore.slottags --table`` prints it as one ``<slot> #<n>`` line per slot,
for programs in other languages (docs/redis-layout.md gives the algorithm to port).
"""

from __future__ import annotations

import argparse
import sys
from binascii import crc_hqx
from collections.abc import Iterable, Sequence
from pathlib import Path

SLOTS = 16384

#: The package data, beside this module.
SHIPPED = Path(__file__).resolve().parent / "slot-tags.txt"

_HEADER = (
    '# The hash tag of each Redis Cluster hash slot, in slot order: n of the smallest "#<n>"\n'
    "# whose CRC16 mod 16384 is the slot. Generated, do not edit:\n"
    "# python -m lockcore.slottags > lockcore/slot-tags.txt\n"
)
_TABLE_HEADER = (
    "# slot tag: the hash tag lockcore uses for the keys of each Redis Cluster hash slot\n"
    "# (the smallest #<n> whose CRC16 mod 16384 is the slot; see docs/redis-layout.md)\n"
)

_DIGITS = [b"%d" % d for d in range(10)]


def compute() -> tuple[int, ...]:
    """The n of each slot's tag ``#<n>``, in slot order."""
    # binascii.crc_hqx is CRC16-XMODEM, the CRC Redis Cluster uses, in C; crc_hqx(b, c)
    # continues the CRC c of a text over the bytes b. n = 10p + d runs in order, and
    # "#<n>" is "#<p>" ("#" for p = 0) then the digit d: one CRC of "#<p>" serves ten n.
    numbers = [-1] * SLOTS
    missing = SLOTS
    after_hash = crc_hqx(b"#", 0)
    head, p = after_hash, 0
    while missing:
        for d, digit in enumerate(_DIGITS):
            slot = crc_hqx(digit, head) % SLOTS
            if numbers[slot] < 0:
                numbers[slot] = 10 * p + d
                missing -= 1
        p += 1
        head = crc_hqx(b"%d" % p, after_hash)
    return tuple(numbers)


def render(numbers: Iterable[int]) -> str:
    """The package data: a comment, then the n of every slot in slot order, on one line."""
    return _HEADER + " ".join(map(str, numbers)) + "\n"


def parse(text: str) -> tuple[str, ...]:
    """The n of every slot (decimal text) from the package data; ValueError if malformed."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    words = tuple(lines[-1].split()) if len(lines) == 1 else ()
    if len(words) != SLOTS or not all(word.isdigit() for word in words):
        raise ValueError(f"not a table of {SLOTS} slot tags")
    return words


def table(numbers: Iterable[int]) -> str:
    """One ``<slot> #<n>`` line per slot, for programs that do not read the package data."""
    return _TABLE_HEADER + "".join(f"{slot} #{n}\n" for slot, n in enumerate(numbers))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lockcore.slottags",
        description="Print the hash tag of each Redis Cluster hash slot, as lockcore "
        "ships it (lockcore/slot-tags.txt), or with --table one '<slot> #<n>' line per slot.",
    )
    parser.add_argument("--table", action="store_true", help="one '<slot> #<n>' line per slot")
    args = parser.parse_args(argv)
    numbers = compute()
    sys.stdout.write(table(numbers) if args.table else render(numbers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
