"""The micro-batcher in-process, on a stand-in model that records its forward passes: concurrent
requests share passes, each caller gets exactly its own rows back, no pass is larger than
`max_rows`, requests of different lengths never share one, and a failed pass fails only the
requests in it. (The same batcher behind a real
server: test_service.py's slow layer.)"""

import asyncio

import pytest
import torch

from {{ cookiecutter.package_name }}.batching import MicroBatcher, rows_of

SIZES = (1, 3, 7, 1, 16, 2, 5, 8)


def requests() -> list[dict[str, torch.Tensor]]:
    """Rows that say whose they are: request i holds 1000 * i + its row numbers."""
    return [{"x": torch.arange(n, dtype=torch.float32) + 1000 * i} for i, n in enumerate(SIZES)]


def serve(predict, max_rows: int, requests) -> list:
    """Send the requests together, as concurrent clients would; the answers, or each error."""

    async def main():
        batcher = MicroBatcher(predict, max_rows=max_rows, max_wait_s=0.05,
                               in_flight=lambda: len(requests))  # fmt: skip
        batcher.start()
        answers = await asyncio.gather(*(batcher(r) for r in requests), return_exceptions=True)
        await batcher.stop()
        return answers

    return asyncio.run(main())


def doubling(passes: list[int]):
    def predict(inputs):
        passes.append(rows_of(inputs))
        return {"y": inputs["x"] * 2}

    return predict


def test_concurrent_requests_share_one_pass_and_get_their_own_rows():
    passes: list[int] = []
    sent = requests()
    answers = serve(doubling(passes), max_rows=1024, requests=sent)
    assert passes == [sum(SIZES)]  # all were queued before the first pass
    for request, answer in zip(sent, answers, strict=True):
        assert torch.equal(answer["y"], request["x"] * 2)


@pytest.mark.parametrize("max_rows", [1, 16, 17])
def test_no_pass_is_larger_than_max_rows(max_rows):
    passes: list[int] = []
    sent = requests()
    answers = serve(doubling(passes), max_rows=max_rows, requests=sent)
    assert sum(passes) == sum(SIZES)
    # A pass larger than max_rows is one request larger than max_rows, alone.
    assert all(rows <= max_rows or rows in SIZES for rows in passes), passes
    for request, answer in zip(sent, answers, strict=True):
        assert torch.equal(answer["y"], request["x"] * 2)


def test_a_failed_pass_fails_only_its_own_requests():
    passes: list[int] = []

    def fails_on_the_second_pass(inputs):
        passes.append(rows_of(inputs))
        if len(passes) == 2:
            raise RuntimeError("out of memory")
        return {"y": inputs["x"] * 2}

    sent = requests()
    answers = serve(fails_on_the_second_pass, max_rows=16, requests=sent)
    failed = [isinstance(answer, RuntimeError) for answer in answers]
    assert 0 < sum(failed) < len(sent)
    assert sum(n for n, bad in zip(SIZES, failed, strict=True) if bad) == passes[1]
    for request, answer, bad in zip(sent, answers, failed, strict=True):
        if not bad:
            assert torch.equal(answer["y"], request["x"] * 2)


LENGTHS = (3, 5, 3, 1, 5, 3, 1, 3)


@pytest.mark.parametrize("max_rows", [1, 2, 1024])
def test_requests_of_different_lengths_get_passes_of_their_own(max_rows):
    """A model with a -1 dimension past the batch (sequences of any length): each length is
    batched with its own, the oldest request's first, and every request gets its answer."""
    passes: list[tuple[int, ...]] = []

    def summing(inputs):
        passes.append(tuple(inputs["x"].shape))
        return {"y": inputs["x"].sum(dim=1)}

    sent = [{"x": torch.full((1, n), float(i))} for i, n in enumerate(LENGTHS)]
    answers = serve(summing, max_rows=max_rows, requests=sent)
    for request, answer in zip(sent, answers, strict=True):
        assert torch.equal(answer["y"], request["x"].sum(dim=1))
    assert passes[0][1] == LENGTHS[0]
    assert all(rows <= max_rows for rows, _ in passes)
    if max_rows == 1024:  # all were queued before the first pass: one pass per length
        assert sorted(passes) == [(2, 1), (2, 5), (4, 3)]


def test_bytes_inputs_batch_as_lists():
    """BYTES rows (lists of bytes) share passes whatever their lengths; each caller gets its own."""
    passes: list[list[bytes]] = []

    def lengths(inputs):
        passes.append(inputs["text"])
        return {"length": torch.tensor([len(text) for text in inputs["text"]])}

    sent = [{"text": [b"a" * i, b"b" * (i + 1)]} for i in range(6)]
    answers = serve(lengths, max_rows=1024, requests=sent)
    for request, answer in zip(sent, answers, strict=True):
        assert answer["length"].tolist() == [len(text) for text in request["text"]]
    assert len(passes) < len(sent)  # some requests shared a pass
