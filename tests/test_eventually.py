"""The tests' one way to wait: eventually() returns what passed, and says what it last saw when nothing did."""

import itertools

import pytest

from .helpers import eventually


async def test_a_plain_function_is_called_until_its_value_holds():
    counter = itertools.count()
    assert await eventually(lambda: next(counter), lambda n: n >= 3, interval=0) == 3


async def test_an_async_function_is_awaited_and_a_failed_assertion_means_not_yet():
    calls = []

    async def check() -> str:
        calls.append(None)
        assert len(calls) > 2, "too soon"
        return "done"

    assert await eventually(check, interval=0) == "done"
    assert len(calls) == 3


async def test_the_timeout_names_what_was_awaited_and_the_last_value():
    with pytest.raises(AssertionError, match=r"waited 0\.1 s for the answer; it last returned 0"):
        await eventually(lambda: 0, timeout=0.1, interval=0.01, what="the answer")


async def test_the_timeout_names_the_last_exception_and_chains_it():
    def check():
        raise AssertionError("not there yet")

    with pytest.raises(AssertionError, match="it last raised AssertionError") as failed:
        await eventually(check, timeout=0.1, interval=0.01)
    assert str(failed.value.__cause__) == "not there yet"


async def test_another_exception_goes_up_at_once():
    calls = []

    def check():
        calls.append(None)
        raise KeyError("broken")

    with pytest.raises(KeyError):
        await eventually(check, timeout=10)
    assert len(calls) == 1
