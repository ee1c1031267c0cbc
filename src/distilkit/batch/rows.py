"""Input rows -> task items -> one output row each: the per-row work shared by both engines."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from distilkit.batch.config import BatchConfig
from distilkit.errors import UserError

AUTO_TEXT_COLUMNS = ("text", "input_string")  # ``input_string``: the model cards' batch samples
_INPUT_INDEX = re.compile(r"^input \d+: ")


@dataclass(frozen=True)
class InputRow:
    """One input row: its 0-based row number, its fields, or why it could not be read."""

    index: int
    data: dict[str, Any] | None
    error: str | None = None


def reason(err: Exception) -> str:
    """The row-level error text: the handler's message without its ``input N:`` prefix."""
    return _INPUT_INDEX.sub("", str(err))


@dataclass(frozen=True)
class Columns:
    """Which input columns feed the task and the output ``id``."""

    task: str
    text: str | None = None
    question: str = "question"
    context: str = "context"
    id: str = "id"

    @classmethod
    def from_config(cls, config: BatchConfig, task: str) -> Columns:
        return cls(task, config.text_column, config.question_column, config.context_column, config.id_column)

    def check_header(self, header: list[str] | None) -> Columns:
        """Resolve the columns against a file's header (CSV, Parquet); JSONL (None) resolves per row.

        Raises:
            UserError: naming the flag, when a needed column is not in the header.
        """
        if header is None:
            return self
        if self.task == "question-answering":
            for flag, name in (("--question-column", self.question), ("--context-column", self.context)):
                if name not in header:
                    raise UserError(
                        f"{flag} {name!r}: no such column in the input (columns: {', '.join(header)})"
                    )
            return self
        text = self.text or next((c for c in AUTO_TEXT_COLUMNS if c in header), "text")
        if text not in header:
            raise UserError(
                f"--text-column {text!r}: no such column in the input (columns: {', '.join(header)})"
            )
        return replace(self, text=text)

    def item(self, data: dict[str, Any]) -> Any:
        """The task input of one row, in the form ``Predictor.predict`` takes.

        Raises:
            UserError: the row lacks a needed field.
        """
        if self.task == "question-answering":
            for name in (self.question, self.context):
                if name not in data:
                    raise UserError(f"missing column {name!r}")
            return {"question": data[self.question], "context": data[self.context]}
        name = self.text or next((c for c in AUTO_TEXT_COLUMNS if c in data), "text")
        if name not in data:
            raise UserError(f"missing column {name!r}")
        pair = data.get("text_pair")
        if self.task == "text-classification" and pair not in (None, ""):
            return {"text": data[name], "text_pair": pair}
        return data[name]

    def row_id(self, row: InputRow) -> Any:
        """The row's id: its id column's value, else its 0-based row number."""
        value = None if row.data is None else row.data.get(self.id)
        return row.index if value is None else value


def predict_rows(
    predictor: Any, rows: list[InputRow], params: dict[str, Any], columns: Columns
) -> list[dict]:
    """Predict one chunk of rows; one output row ``{"id", "prediction", "error"}`` per input row, in order.

    Each row is validated on its own (``handler.check_inputs`` on a one-item list), so a bad row
    fails alone; the good rows go through ``predictor.predict`` together, so its length-aware
    batching sees the whole chunk.
    """
    errors: list[str | None] = [row.error for row in rows]
    items: dict[int, Any] = {}
    for i, row in enumerate(rows):
        if row.error is not None or row.data is None:
            errors[i] = errors[i] or "unreadable row"
            continue
        try:
            item = columns.item(row.data)
            predictor.handler.check_inputs([item])
        except ValueError as err:
            errors[i] = reason(err)
        else:
            items[i] = item
    try:
        predictions = _predict(predictor, items, params)
    except ValueError:
        # Something only encoding sees (too many tokens, a mask the tokenizer splits): find those rows.
        for i in list(items):
            try:
                predictor.prepare([items[i]], params)
            except ValueError as err:
                errors[i] = reason(err)
                del items[i]
        predictions = _predict(predictor, items, params)
    return [
        {"id": columns.row_id(row), "prediction": predictions.get(i), "error": errors[i]}
        for i, row in enumerate(rows)
    ]


def _predict(predictor: Any, items: dict[int, Any], params: dict[str, Any]) -> dict[int, Any]:
    if not items:
        return {}
    return dict(zip(items, predictor.predict(list(items.values()), params), strict=True))
