"""Tunnels run on uvloop when it is installed (asyncio's own loop when it is not), and
mask frames with websockets' C speedups."""

from __future__ import annotations

import asyncio
import sys

import pytest

from access.tunnel.client import run


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_a_tunnel_runs_on_uvloop_when_installed() -> None:
    pytest.importorskip("uvloop")
    assert run(_loop_module()).startswith("uvloop")


def test_without_uvloop_asyncio_runs_the_tunnel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert run(_loop_module()).startswith("asyncio")


def test_frames_are_masked_by_websockets_c_speedups() -> None:
    # Every byte a client sends is masked and every byte the stand-in receives unmasked:
    # the pure-Python fallback would cost several times the CPU per MiB.
    import websockets.frames
    import websockets.speedups

    assert websockets.frames.apply_mask is websockets.speedups.apply_mask
