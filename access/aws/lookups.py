"""Read-only AWS lookups answered once per unit of work (one command, one click).

A request looks the instance, its endpoints and the principal up while it is validated,
and the pre-flight looks the same things up again moments later. Inside `one_lookup_each()`
the second lookup reuses the first answer; outside it every call goes to AWS. Nothing
outlives the block, so a change made in AWS is seen by the next command.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
_memo: ContextVar[dict[Hashable, Any] | None] = ContextVar("eice_aws_lookups", default=None)


@contextmanager
def one_lookup_each() -> Iterator[None]:
    """Within this block (and this thread), identical lookups are made once; nests freely."""
    token = _memo.set({}) if _memo.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _memo.reset(token)


def memoised(key: Hashable, lookup: Callable[[], T]) -> T:
    """`lookup()`, or its earlier answer for `key` inside `one_lookup_each()` (errors are not kept)."""
    memo = _memo.get()
    if memo is None:
        return lookup()
    if key not in memo:
        memo[key] = lookup()
    return memo[key]


def remember(key: Hashable, value: Any) -> None:
    """Record an answer found another way (an instance found by Name is also known by ID)."""
    memo = _memo.get()
    if memo is not None:
        memo.setdefault(key, value)
