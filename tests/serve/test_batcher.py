"""serve/batcher.py on its own, with a plain function for a model: concurrent texts share a call, each request
gets its own answer, a model error reaches every waiting request, close() fails what is queued."""

from __future__ import annotations

import asyncio
import threading

import pytest

from structbert_lite.serve.batcher import MicroBatcher, ShuttingDown


class Model:
    """Answers each text with itself; the first call waits for ``release`` so others queue up behind it."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[list[str]] = []
        self.started, self.release = threading.Event(), threading.Event()
        self.fail_on = fail_on

    def __call__(self, texts):
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.started.set()
            assert self.release.wait(10), "the test never released the first call"
        if self.fail_on in texts:
            raise RuntimeError("model failed")
        return [{"text": t} for t in texts]


async def queued_behind_a_running_call(batcher: MicroBatcher, model: Model, texts: list[str]) -> list:
    """Submit "first", wait until the model runs it, queue ``texts``, then let the model go on."""
    first = asyncio.ensure_future(batcher.submit("first"))
    await asyncio.to_thread(model.started.wait, 10)
    rest = [asyncio.ensure_future(batcher.submit(t)) for t in texts]
    await asyncio.sleep(0.05)  # every submit is queued before the first call returns
    model.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def run(coro):
    return asyncio.run(coro)


def test_texts_queued_during_a_call_share_the_next_one_and_get_their_own_answers():
    model = Model()

    async def scenario():
        batcher = MicroBatcher(model, max_items=32)
        answers = await queued_behind_a_running_call(batcher, model, [f"text-{i}" for i in range(5)])
        stats = batcher.stats()
        await batcher.close()
        return answers, stats

    answers, stats = run(scenario())
    assert [a["text"] for a in answers] == ["first"] + [f"text-{i}" for i in range(5)]
    assert model.calls == [["first"], [f"text-{i}" for i in range(5)]]
    assert stats == {"batches": 2, "texts": 6, "mean_batch": 3.0, "largest_batch": 5}


def test_max_items_caps_a_call():
    model = Model()

    async def scenario():
        batcher = MicroBatcher(model, max_items=2)
        answers = await queued_behind_a_running_call(batcher, model, [f"t{i}" for i in range(5)])
        await batcher.close()
        return answers

    assert [a["text"] for a in run(scenario())] == ["first", "t0", "t1", "t2", "t3", "t4"]
    assert [len(c) for c in model.calls] == [1, 2, 2, 1]


def test_a_model_error_reaches_every_text_of_its_call_and_the_worker_goes_on():
    model = Model(fail_on="bad")

    async def scenario():
        batcher = MicroBatcher(model, max_items=32)
        answers = await queued_behind_a_running_call(batcher, model, ["bad", "also-in-that-call"])
        after = await batcher.submit("later")
        await batcher.close()
        return answers, after

    answers, after = run(scenario())
    assert answers[0] == {"text": "first"}
    assert all(isinstance(a, RuntimeError) and "model failed" in str(a) for a in answers[1:])
    assert after == {"text": "later"}


def test_a_model_that_drops_a_result_fails_its_whole_call_and_no_request_hangs():
    def one_short(texts):  # a model that loses the last result of a call of two or more
        return [{"text": t} for t in texts[: max(1, len(texts) - 1)]]

    async def scenario():
        batcher = MicroBatcher(one_short, max_items=32)  # the three texts are queued before the worker runs: one call
        calls = asyncio.gather(*(batcher.submit(t) for t in ["a", "b", "c"]), return_exceptions=True)
        dropped = await asyncio.wait_for(calls, 10)
        after = await asyncio.wait_for(batcher.submit("later"), 10)
        await batcher.close()
        return dropped, after

    dropped, after = run(scenario())
    assert all(isinstance(a, ValueError) for a in dropped), dropped
    assert after == {"text": "later"}  # the worker lives on


def test_close_fails_what_is_queued_and_refuses_new_texts():
    model = Model()

    async def scenario():
        batcher = MicroBatcher(model, max_items=32)
        first = asyncio.ensure_future(batcher.submit("first"))
        await asyncio.to_thread(model.started.wait, 10)
        queued = asyncio.ensure_future(batcher.submit("queued"))
        await asyncio.sleep(0.05)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0.05)
        model.release.set()  # the running call may finish; close() waits for it
        await closing
        with pytest.raises(ShuttingDown):
            await batcher.submit("after close")
        return await asyncio.gather(first, queued, return_exceptions=True)

    first, queued = run(scenario())
    assert isinstance(queued, ShuttingDown)
    assert isinstance(first, (dict, ShuttingDown))  # a call cut by the shutdown answers ShuttingDown, never hangs
