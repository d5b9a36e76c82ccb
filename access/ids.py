"""Row IDs: short, unguessable, lowercase, safe inside IAM policy names."""

from __future__ import annotations

import re
import uuid

ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: read aloud and typed back
LENGTH = 10


def new_id(prefix: str) -> str:
    """A fresh ID such as `g-k3v9q2m7xa`."""
    return numbered_id(prefix, uuid.uuid4().int)


def numbered_id(prefix: str, number: int) -> str:
    """The ID that spells `number` (modulo 32**10) in the ID alphabet: benchmarks make their
    rows' IDs with it, in order and in the same shape as real ones."""
    chars = []
    for _ in range(LENGTH):
        number, index = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[index])
    return f"{prefix}-{''.join(reversed(chars))}"


def id_pattern(prefix: str) -> str:
    """A regular expression matching exactly the IDs `new_id(prefix)` makes."""
    return f"{prefix}-[{ALPHABET}]{{{LENGTH}}}"


# What a person may type for a grant: looser than `id_pattern("g")` (which checks the
# alphabet), so that a mistyped ID gets "no grant g-..." rather than "not a grant ID".
GRANT_REF = re.compile(r"^g-[a-z0-9]{4,38}$")
