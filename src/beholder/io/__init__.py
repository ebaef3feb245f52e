"""Inputs and outputs of batch scoring: INPUT expansion, score tables, and the resumable writer."""

from beholder.io.readers import InputError, InputPlan, Item, read_tar_member, split_tar_key
from beholder.io.tables import (
    read_jsonl,
    read_provenance,
    read_scores,
    read_table,
    table_format,
    write_json_atomic,
    write_table,
)
from beholder.io.writers import OutputConflict, ResumableWriter, TableTotals

__all__ = [
    "InputError",
    "InputPlan",
    "Item",
    "OutputConflict",
    "ResumableWriter",
    "TableTotals",
    "read_jsonl",
    "read_provenance",
    "read_scores",
    "read_table",
    "read_tar_member",
    "split_tar_key",
    "table_format",
    "write_json_atomic",
    "write_table",
]
