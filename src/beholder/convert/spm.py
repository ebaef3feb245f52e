"""Reading a SentencePiece model file (tokenizer.model) without the sentencepiece or protobuf packages.

A .model file is a serialised `sentencepiece.ModelProto` protobuf message. Converting it to a fast tokenizer
needs only the pieces (text, score, type) and a few trainer and normalizer settings; this module reads exactly
those from the protobuf wire format and skips every other field. Field numbers and defaults are those of
sentencepiece_model.proto. The objects mirror the attribute names of the generated protobuf classes, so
transformers' SentencePiece converter can consume them directly.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# SentencePiece.Type values
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# TrainerSpec.ModelType values
UNIGRAM, BPE = 1, 2


@dataclass
class Piece:
    piece: str
    score: float = 0.0
    type: int = NORMAL


@dataclass
class TrainerSpec:
    model_type: int = UNIGRAM
    treat_whitespace_as_suffix: bool = False
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_piece: str = "<unk>"
    bos_piece: str = "<s>"
    eos_piece: str = "</s>"
    pad_piece: str = "<pad>"


@dataclass
class NormalizerSpec:
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


@dataclass
class ModelProto:
    pieces: list[Piece] = field(default_factory=list)
    trainer_spec: TrainerSpec = field(default_factory=TrainerSpec)
    normalizer_spec: NormalizerSpec = field(default_factory=NormalizerSpec)


# field number -> (attribute, how to decode the wire value)
_PIECE = {1: ("piece", "str"), 2: ("score", "float"), 3: ("type", "int")}
_TRAINER = {
    3: ("model_type", "int"), 24: ("treat_whitespace_as_suffix", "bool"), 35: ("byte_fallback", "bool"),
    40: ("unk_id", "int"), 41: ("bos_id", "int"), 42: ("eos_id", "int"), 43: ("pad_id", "int"),
    45: ("unk_piece", "str"), 46: ("bos_piece", "str"), 47: ("eos_piece", "str"), 48: ("pad_piece", "str"),
}
_NORMALIZER = {
    2: ("precompiled_charsmap", "bytes"), 3: ("add_dummy_prefix", "bool"), 4: ("remove_extra_whitespaces", "bool"),
    5: ("escape_whitespaces", "bool"),
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, raw value) of each field of one message: an int for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = data[pos : pos + width], pos + width
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated protobuf message")
        yield number, value


def _decode(kind: str, value: int | bytes):
    if kind == "str":
        return value.decode("utf-8")
    if kind == "bytes":
        return bytes(value)
    if kind == "float":
        return struct.unpack("<f", value)[0]
    if kind == "bool":
        return bool(value)
    return value - (1 << 64) if value >= 1 << 63 else value  # int32/enum: negatives are 10-byte two's complement


def _message(cls, data: bytes, schema: dict):
    values = {}
    for number, value in _fields(data):
        if number in schema:
            name, kind = schema[number]
            values[name] = _decode(kind, value)
    return cls(**values)


def read_model(path: str | Path) -> ModelProto:
    """Parse a SentencePiece .model file; ValueError if it is not one."""
    proto = ModelProto()
    try:
        for number, value in _fields(Path(path).read_bytes()):
            if number == 1:
                proto.pieces.append(_message(Piece, value, _PIECE))
            elif number == 2:
                proto.trainer_spec = _message(TrainerSpec, value, _TRAINER)
            elif number == 3:
                proto.normalizer_spec = _message(NormalizerSpec, value, _NORMALIZER)
    except (AttributeError, TypeError, struct.error, UnicodeDecodeError) as exc:  # a field of the wrong wire type
        raise ValueError(f"{path} is not a SentencePiece model: {exc}") from None
    if not proto.pieces:
        raise ValueError(f"{path} holds no SentencePiece pieces")
    return proto
