"""A window of the request log as the monitor reads it: the inputs the served version
saw (one DataFrame, one row a scored row), its predictions and the labels fed back,
aligned row by row.

A logged request holds the raw body a client sent (MLflow's scoring JSON:
``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs``; or CSV) and the
response text (``{"predictions": [...]}``); a label arrives later through ``/feedback``
as one value or a list, one per row. A body this parser cannot read (a truncated one,
a tensor of images) is counted with the first reasons kept, never raised: one odd
client must not stop the monitor of everyone else's traffic.

Column names are always text; a request's array gets ``"0".."n-1"`` as
:func:`~mlops_nb.monitoring.profile.build_profile` names an array's columns, or the
reference's own column names when it has exactly that many (MLflow maps an unnamed
array onto the signature's columns by position in the same way).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["PROBLEMS_KEPT", "Window", "parse_inputs", "parse_predictions", "read_window"]

#: How many distinct reasons for unreadable requests a window keeps (the count is complete).
PROBLEMS_KEPT = 5
_PREDICTION_KEYS = ("prediction", "predictions", "label", "output", "score")


@dataclass
class Window:
    """The rows of one served version in one time window.

    ``inputs`` has one row a scored row (str column names); ``predictions`` and
    ``labels`` are lists of the same length, ``None`` where a row has none.
    ``requests`` counts the version's answered (status 200) requests, ``unreadable``
    those whose inputs could not be read (their rows are left out), ``problems`` the
    first few reasons why, each one line; ``first``/``last`` are the oldest and newest
    request times (ISO, UTC) or ``None`` for an empty window.
    """

    inputs: pd.DataFrame
    predictions: list[Any]
    labels: list[Any]
    requests: int = 0
    unreadable: int = 0
    unmatched_predictions: int = 0
    unmatched_labels: int = 0
    problems: list[str] = field(default_factory=list)
    first: str | None = None
    last: str | None = None

    @property
    def rows(self) -> int:
        """The scored rows read."""
        return len(self.predictions)

    @property
    def labelled(self) -> int:
        """The rows that have a label."""
        return sum(1 for label in self.labels if label is not None)

    def known_predictions(self) -> list[Any]:
        """The predictions that could be read, in order."""
        return [p for p in self.predictions if p is not None]


class _Unreadable(ValueError):
    """A request body the monitor cannot turn into rows (the message says why)."""


# ---------------------------------------------------------------- one request


def parse_inputs(text: str | None) -> tuple[list[str], list[list[Any]]]:
    """(column names, rows) of one request body in any of MLflow's scoring formats.

    Raises ``ValueError`` (one line) for a body that is none of them.
    """
    if text is None or not text.strip():
        raise _Unreadable("the request had no body")
    try:
        data = json.loads(text)
    except ValueError:
        return _csv(text)
    if not isinstance(data, dict):
        raise _Unreadable("a JSON body must be an object with dataframe_split, dataframe_records, instances or inputs")
    if "dataframe_split" in data:
        return _split(data["dataframe_split"])
    if "dataframe_records" in data:
        return _records(data["dataframe_records"])
    for key in ("instances", "inputs"):
        if key in data:
            return _tensor(data[key])
    raise _Unreadable("the JSON body has none of dataframe_split, dataframe_records, instances, inputs")


def _csv(text: str) -> tuple[list[str], list[list[Any]]]:
    import pandas as pd

    if "…[truncated" in text[-60:]:
        raise _Unreadable("the request body was cut to the log's max_field_bytes")
    try:
        frame = pd.read_csv(io.StringIO(text))
    except Exception as exc:
        raise _Unreadable(f"the body is neither JSON nor CSV ({type(exc).__name__})") from None
    if frame.empty:
        raise _Unreadable("the CSV body has no rows")
    return [str(c) for c in frame.columns], frame.astype(object).where(frame.notna(), None).values.tolist()


def _split(body: Any) -> tuple[list[str], list[list[Any]]]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise _Unreadable("dataframe_split needs an object with a data list")
    data = body["data"]
    rows = [row if isinstance(row, list) else [row] for row in data]
    width = max((len(row) for row in rows), default=0)
    columns = body.get("columns")
    if columns is None:
        columns = [str(i) for i in range(width)]
    if not isinstance(columns, list) or any(len(row) != len(columns) for row in rows):
        raise _Unreadable("dataframe_split's rows do not match its columns")
    _check_flat(rows)
    return [str(c) for c in columns], rows


def _records(body: Any) -> tuple[list[str], list[list[Any]]]:
    if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
        raise _Unreadable("dataframe_records needs a list of objects")
    columns: dict[str, None] = {}
    for record in body:
        columns.update(dict.fromkeys(str(k) for k in record))
    names = list(columns)
    rows = [[_get(record, name) for name in names] for record in body]
    _check_flat(rows)
    return names, rows


def _get(record: dict[Any, Any], name: str) -> Any:
    return record[name] if name in record else next((v for k, v in record.items() if str(k) == name), None)


def _tensor(body: Any) -> tuple[list[str], list[list[Any]]]:
    """``instances``/``inputs``: a list of rows, of records or of scalars, or an object of
    named columns."""
    if isinstance(body, dict):
        values = {str(k): v if isinstance(v, list) else [v] for k, v in body.items()}
        lengths = {len(v) for v in values.values()}
        if len(lengths) != 1:
            raise _Unreadable("the named inputs have different lengths")
        names = list(values)
        rows = [list(row) for row in zip(*values.values())]
        _check_flat(rows)
        return names, rows
    if not isinstance(body, list):
        return ["0"], [[body]]
    if body and all(isinstance(r, dict) for r in body):
        return _records(body)
    if all(not isinstance(r, list | dict) for r in body):
        return ["0"], [[v] for v in body]
    if not all(isinstance(r, list) for r in body) or len({len(r) for r in body}) != 1:
        raise _Unreadable("the instances are not rows of one length")
    _check_flat(body)
    return [str(i) for i in range(len(body[0]))], body


def _check_flat(rows: Sequence[Sequence[Any]]) -> None:
    for row in rows:
        for value in row:
            if isinstance(value, list | dict):
                # A tensor (an image, a sequence) per row: no per-feature profile applies.
                raise _Unreadable("the rows hold nested values (tensors), which the monitor does not profile")


def parse_predictions(text: str | None, rows: int) -> list[Any] | None:
    """One prediction a row from a response text, or ``None`` when it cannot be read or
    does not have ``rows`` entries. Rows of several outputs keep the one named
    prediction (or label, output, score) or a lone one."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and "predictions" in data:
        data = data["predictions"]
    if isinstance(data, dict):  # columns of a DataFrame
        data = _one_output(data)
        if data is None:
            return None
    if not isinstance(data, list) or len(data) != rows:
        return None
    out = []
    for value in data:
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else None
        elif isinstance(value, dict):
            value = _one_output(value)
        if isinstance(value, list | dict):
            value = None
        out.append(value)
    return out


def _one_output(values: dict[str, Any]) -> Any:
    if len(values) == 1:
        return next(iter(values.values()))
    for key in _PREDICTION_KEYS:
        if key in values:
            return values[key]
    return None


def _labels(label: Any, rows: int) -> list[Any] | None:
    """One label a row: a list of ``rows`` labels, or one label for a one-row request."""
    if label is None:
        return [None] * rows
    if isinstance(label, list):
        return [_scalar(v) for v in label] if len(label) == rows else None
    return [_scalar(label)] if rows == 1 else None


def _scalar(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# ---------------------------------------------------------------- a window


def read_window(log: pd.DataFrame, version: str, columns: Sequence[str] | None = None) -> Window:
    """The window of ``version`` in a frame of :func:`~mlops_nb.serving.requestlog.read_log`:
    its status-200 requests, parsed and aligned (see :class:`Window`). ``columns`` are
    the reference's column names (positional arrays of that width take them)."""
    import pandas as pd

    mine = log[(log["version"].astype(str) == str(version)) & (log["status"] == 200)]
    window = Window(inputs=pd.DataFrame(), predictions=[], labels=[], requests=len(mine))
    if mine.empty:
        return window
    window.first = mine["time"].min().isoformat()
    window.last = mine["time"].max().isoformat()
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    order: list[tuple[tuple[str, ...], int]] = []
    for inputs, outputs, label in zip(mine["inputs"], mine["outputs"], mine["label"]):
        try:
            names, rows = parse_inputs(inputs)
        except ValueError as exc:
            _problem(window, str(exc))
            continue
        names = _named(names, columns)
        predictions = parse_predictions(outputs, len(rows))
        if predictions is None:
            window.unmatched_predictions += len(rows)
            predictions = [None] * len(rows)
        labels = _labels(label, len(rows))
        if labels is None:
            window.unmatched_labels += len(rows)
            labels = [None] * len(rows)
        groups.setdefault(tuple(names), []).extend(rows)
        window.predictions.extend(predictions)
        window.labels.extend(labels)
        order.append((tuple(names), len(rows)))
    window.inputs = _frame(groups, order)
    return window


def _problem(window: Window, reason: str) -> None:
    window.unreadable += 1
    if reason not in window.problems and len(window.problems) < PROBLEMS_KEPT:
        window.problems.append(reason)


def _named(names: list[str], columns: Sequence[str] | None) -> list[str]:
    positional = names == [str(i) for i in range(len(names))]
    if positional and columns is not None and len(columns) == len(names) and list(columns) != names:
        return [str(c) for c in columns]
    return names


def _frame(groups: dict[tuple[str, ...], list[list[Any]]], order: list[tuple[tuple[str, ...], int]]) -> pd.DataFrame:
    """One DataFrame from rows grouped by their columns, in the requests' order. The
    common case (every request has the same columns) is one constructor call: a frame
    a request would cost seconds on a window of 100,000 one-row requests."""
    import pandas as pd

    if len(groups) == 1:
        names, rows = next(iter(groups.items()))
        return _typed(pd.DataFrame(rows, columns=list(names)))
    frames = {names: _typed(pd.DataFrame(rows, columns=list(names))) for names, rows in groups.items()}
    taken = dict.fromkeys(frames, 0)
    parts = []
    for names, n in order:  # slices in arrival order, so rows stay aligned with predictions
        start = taken[names]
        parts.append(frames[names].iloc[start : start + n])
        taken[names] = start + n
    return pd.concat(parts, ignore_index=True, sort=False)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns of numbers (and missing values) as numbers; others as they came."""
    import pandas as pd

    for name in frame.columns:
        column = frame[name]
        if column.dtype == object:
            numbers = pd.to_numeric(column, errors="coerce")
            if numbers.notna().sum() == column.notna().sum() and not column.map(_is_text).any():
                frame[name] = numbers
    return frame


def _is_text(value: Any) -> bool:
    return isinstance(value, str | bool)
