"""Inputs and outputs of batch scoring: INPUT expansion, score tables, and the resumable writer."""

from beholder.io.keys import key_from_text, key_to_text, printable
from beholder.io.readers import (
    InputError,
    InputPlan,
    Item,
    Located,
    describe_skipped,
    locate,
    read_tar_members,
    split_tar_key,
    tar_member_spans,
)
from beholder.io.tables import (
    paths_base,
    read_jsonl,
    read_provenance,
    read_scores,
    read_table,
    table_format,
    write_json_atomic,
    write_table,
)
from beholder.io.writers import AlreadyComplete, OutputConflict, ResumableWriter, TableTotals

__all__ = [
    "AlreadyComplete",
    "InputError",
    "InputPlan",
    "Item",
    "Located",
    "OutputConflict",
    "ResumableWriter",
    "TableTotals",
    "describe_skipped",
    "key_from_text",
    "key_to_text",
    "locate",
    "paths_base",
    "printable",
    "read_jsonl",
    "read_provenance",
    "read_scores",
    "read_table",
    "read_tar_members",
    "split_tar_key",
    "table_format",
    "tar_member_spans",
    "write_json_atomic",
    "write_table",
]
