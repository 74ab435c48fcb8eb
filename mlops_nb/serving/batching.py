"""Adaptive batching: concurrent scoring requests answered by one ``predict`` call.

Opt-in (``--max-batch-size N`` with N > 1). A request waits for company only while the
model is busy: when no batch is running it goes at once (one client sees no added
latency), otherwise it waits until the batch is full, the running batch ends, or
``max_wait_ms`` has passed since it arrived. Requests that pile up while the model works
on a batch form the next one, so the batch size follows the load.

Only requests whose bodies parse, with MLflow's own parsers, to a pandas DataFrame with
no ``params`` are grouped, and only with requests of the same columns and dtypes served
by the same version (pandas would otherwise fill a missing column with NaN and let a
request through that alone would be refused). The frames are concatenated, predicted in
one call, and the predictions split back by row counts. Anything else — params, another
input type, a body that does not parse, predictions that cannot be split — goes through
MLflow's ``invocations`` alone, as without batching; a batch whose ``predict`` fails is
answered request by request the same way, so one bad request never fails the others.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

from mlops_nb.serving.deployment import LoadedVersion

__all__ = ["Batcher", "batch_frame", "predict_batch", "split_predictions"]


@dataclass
class _Item:
    body: bytes
    content_type: str
    loaded: LoadedVersion
    future: asyncio.Future[Any]
    arrived: float
    result: Any = field(default=None)


def _mime(content_type: str) -> tuple[str, dict[str, str]]:
    parts = [p.strip() for p in (content_type or "").split(";")]
    params = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in parts[1:])}
    return parts[0].lower(), params


def batch_frame(body: bytes, content_type: str, loaded: LoadedVersion) -> Any:
    """The request's input as the pandas DataFrame MLflow would predict on, or ``None``
    when the request is not one to batch (it then goes through ``invocations`` alone)."""
    import pandas as pd
    from mlflow.pyfunc.scoring_server import SUPPORTED_FORMATS, infer_and_parse_data, parse_csv_input

    mime, params = _mime(content_type)
    if set(params) - {"charset"} or params.get("charset", "utf-8").lower() != "utf-8":
        return None
    from_hints = getattr(loaded.model.metadata, "_is_signature_from_type_hint", None)
    if callable(from_hints) and from_hints():
        return None  # MLflow hands such models the raw "inputs"
    try:
        if mime == "text/csv":
            frame = parse_csv_input(StringIO(body.decode("utf-8")), schema=loaded.input_schema)
        elif mime == "application/json":
            data = json.loads(body)
            if not isinstance(data, dict) or len(data) != 1 or not set(data) <= SUPPORTED_FORMATS:
                return None  # params, two formats, or an unwrapped LLM request
            frame = infer_and_parse_data(data, loaded.input_schema)
        else:
            return None
    except Exception:
        return None  # answered alone, with MLflow's own error
    return frame if isinstance(frame, pd.DataFrame) and len(frame) > 0 else None


def split_predictions(predictions: Any, sizes: list[int]) -> list[Any]:
    """``predictions`` of the concatenated frames, cut back into one part a request;
    ``ValueError`` when their length is not the total row count."""
    import numpy as np
    import pandas as pd

    total = sum(sizes)
    if isinstance(predictions, (pd.DataFrame, pd.Series)):
        if len(predictions) != total:
            raise ValueError(f"{len(predictions)} predictions for {total} rows")
        cut = lambda a, b: predictions.iloc[a:b].reset_index(drop=True)  # noqa: E731
    elif isinstance(predictions, np.ndarray) and predictions.ndim > 0:
        if predictions.shape[0] != total:
            raise ValueError(f"{predictions.shape[0]} predictions for {total} rows")
        cut = lambda a, b: predictions[a:b]  # noqa: E731
    elif isinstance(predictions, list):
        if len(predictions) != total:
            raise ValueError(f"{len(predictions)} predictions for {total} rows")
        cut = lambda a, b: predictions[a:b]  # noqa: E731
    else:
        raise ValueError(f"cannot split predictions of type {type(predictions).__name__}")
    parts, start = [], 0
    for size in sizes:
        parts.append(cut(start, start + size))
        start += size
    return parts


def _alone(body: bytes, content_type: str, loaded: LoadedVersion) -> Any:
    """What ``invocations`` answers for one request, or the exception it raised."""
    from mlflow.pyfunc.scoring_server import invocations

    try:
        return invocations(body, content_type, loaded.model, loaded.input_schema)
    except Exception as exc:
        return exc


def predict_batch(requests: list[tuple[bytes, str, LoadedVersion]]) -> list[Any]:
    """Answer ``requests`` (body, content type, version), batching those that can be:
    one ``InvocationsResponse`` or exception a request, in order. Runs off the event loop."""
    import pandas as pd
    from mlflow.pyfunc.scoring_server import InvocationsResponse, predictions_to_json

    results: list[Any] = [None] * len(requests)
    groups: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
    for i, (body, content_type, loaded) in enumerate(requests):
        frame = batch_frame(body, content_type, loaded)
        if frame is None:
            results[i] = _alone(body, content_type, loaded)
        else:
            key = (id(loaded), tuple(frame.columns), tuple(str(t) for t in frame.dtypes))
            groups.setdefault(key, []).append((i, frame))
    for members in groups.values():
        loaded = requests[members[0][0]][2]
        try:
            frames = [frame for _, frame in members]
            data = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            parts = split_predictions(loaded.model.predict(data), [len(f) for f in frames])
            for (i, _), part in zip(members, parts):
                out = StringIO()
                predictions_to_json(part, out)
                results[i] = InvocationsResponse(out.getvalue(), 200, "application/json")
        except Exception:
            for i, _ in members:  # one bad request must not fail the others
                results[i] = _alone(*requests[i])
    return results


class Batcher:
    """Groups concurrent requests into batches on the running event loop (see the module
    docstring); :meth:`submit` answers as MLflow's ``invocations`` does (an
    ``InvocationsResponse``, or its exception raised)."""

    def __init__(self, max_batch_size: int, max_wait_ms: float) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self._pending: list[_Item] = []
        self._wake: asyncio.Event | None = None
        self._busy = 0
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    def start(self) -> None:
        """Start collecting batches (call from the event loop)."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        """Stop collecting; requests still waiting are answered alone."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for item in self._pending:
            if not item.future.done():
                item.future.set_result(_alone(item.body, item.content_type, item.loaded))
        self._pending.clear()

    async def submit(self, body: bytes, content_type: str, loaded: LoadedVersion) -> Any:
        """The answer to one request, predicted in a batch when it can be."""
        assert self._wake is not None, "Batcher.start() first"
        loop = asyncio.get_running_loop()
        item = _Item(body, content_type, loaded, loop.create_future(), loop.time())
        self._pending.append(item)
        self._wake.set()
        result = await item.future
        if isinstance(result, BaseException):
            raise result
        return result

    async def _collect(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            deadline = self._pending[0].arrived + self.max_wait
            # Wait for company only while a batch is running: an idle model goes at once.
            while len(self._pending) < self.max_batch_size and self._busy > 0:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._pending[: self.max_batch_size]
            del self._pending[: self.max_batch_size]
            self._busy += 1
            task = loop.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Item]) -> None:
        try:
            results = await asyncio.to_thread(predict_batch, [(i.body, i.content_type, i.loaded) for i in batch])
        except Exception as exc:  # never leave a request without an answer
            results = [exc] * len(batch)
        finally:
            self._busy -= 1
            if self._wake is not None:
                self._wake.set()
        for item, result in zip(batch, results):
            if not item.future.done():
                item.future.set_result(result)
