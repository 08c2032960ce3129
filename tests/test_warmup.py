"""The server loads PyTorch and the models when it starts (``dashboard/warmup.py``)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from dashboard import loaders, warmup


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A process where nothing was warmed up yet; returns the log of model loads."""
    calls: list[str] = []

    def slow_store() -> None:
        calls.append(threading.current_thread().name)
        time.sleep(0.2)

    monkeypatch.setattr(loaders, "model_store", slow_store)
    monkeypatch.setattr(warmup, "_READY", threading.Event())
    return calls


def test_the_models_load_once_however_many_visitors_wait(fresh: list[str]) -> None:
    assert not warmup.ready()
    visitors = [threading.Thread(target=warmup.warm_up) for _ in range(4)]
    for visitor in visitors:
        visitor.start()
    for visitor in visitors:
        visitor.join()
    assert warmup.ready() and len(fresh) == 1
    warmup.warm_up()
    assert len(fresh) == 1


def test_the_lifespan_starts_the_warm_up_beside_the_server(fresh: list[str]) -> None:
    async def serve() -> None:
        async with warmup.lifespan(None):
            pass

    asyncio.run(serve())
    deadline = time.monotonic() + 5
    while not warmup.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert warmup.ready() and fresh == [warmup.WARM_UP_THREAD]


def test_a_broken_store_still_marks_the_warm_up_done(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(loaders, "model_store", broken)
    monkeypatch.setattr(warmup, "_READY", threading.Event())
    with pytest.raises(OSError):
        warmup.warm_up()
    assert warmup.ready()  # the pages report the error; nobody waits for ever


def test_streamlit_run_serves_the_app_with_the_warm_up() -> None:
    from dashboard import Home

    assert Home.app._user_lifespan is warmup.lifespan
