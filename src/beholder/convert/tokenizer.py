"""A checkpoint's tokenizer as a fast (Rust `tokenizers`) tokenizer that runs no code from the checkpoint.

Qwen2 checkpoints (HumanAesExpert-1B, ArtiMuse, ERNIE-Image-Aes) ship a tokenizer transformers knows natively.
InternLM2 checkpoints (HumanAesExpert-8B) name the remote-code class InternLM2Tokenizer: a SentencePiece model
whose slow implementation encodes every text chunk between added tokens on its own and starts each text with
BOS. That tokenizer is rebuilt here from tokenizer.model and tokenizer_config.json with transformers' own
SentencePiece converter ("legacy" mode: each chunk between added tokens is encoded separately, as the slow
tokenizer does), the pieces renamed and the tokens added as the config's added_tokens_decoder says.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

from beholder.convert import spm
from beholder.convert.tensors import ConversionError, read_json

# Tokenizer classes that exist only as remote code and are rebuilt from their SentencePiece model here.
SENTENCEPIECE_CLASSES = ("InternLM2Tokenizer", "InternLM2TokenizerFast")


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer of the checkpoint in `folder`, never executing its code."""
    folder = Path(folder)
    config_path = folder / "tokenizer_config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    name = config.get("tokenizer_class") or ("TokenizersBackend" if (folder / "tokenizer.json").is_file() else None)
    if name in SENTENCEPIECE_CLASSES:
        return sentencepiece_tokenizer(folder, config)
    # The class named by tokenizer_config.json, from transformers itself: never the checkpoint's code (auto_map)
    tokenizer_class = tokenizer_class_from_name(name) if name else None
    if tokenizer_class is None:
        raise ConversionError(
            f"the tokenizer of {folder} ({name or 'no tokenizer_class'}) is not one transformers provides, and "
            f"beholder rebuilds only {list(SENTENCEPIECE_CLASSES)} without running checkpoint code"
        )
    try:
        return tokenizer_class.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot load the tokenizer of {folder}: {exc}") from exc


def _content(token: str | dict | None) -> str | None:
    return token["content"] if isinstance(token, dict) else token


def sentencepiece_tokenizer(folder: Path, config: dict) -> PreTrainedTokenizerFast:
    """Rebuild a remote-code SentencePiece tokenizer (InternLM2's) as a fast tokenizer, as configured."""
    from transformers.convert_slow_tokenizer import SpmConverter

    path = folder / Path(config.get("vocab_file") or "tokenizer.model").name
    try:
        proto = spm.read_model(path)
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot read the SentencePiece tokenizer {path}: {exc}") from exc
    if proto.trainer_spec.treat_whitespace_as_suffix:
        raise ConversionError(f"{path}: SentencePiece models that treat whitespace as a suffix are not supported")
    added = {int(i): entry for i, entry in (config.get("added_tokens_decoder") or {}).items()}
    # added_tokens_decoder may give a piece of the model a new name (e.g. a reserved piece becomes <|im_start|>)
    names = [_content(added[i]) if i in added else p.piece for i, p in enumerate(proto.pieces)]
    if proto.trainer_spec.model_type == spm.BPE:
        vocab = {name: i for i, name in enumerate(names)}
    else:
        vocab = [(name, p.score) for name, p in zip(names, proto.pieces)]
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab, legacy=True)
    if backend is None:
        raise ConversionError(f"{path}: unsupported SentencePiece model type {proto.trainer_spec.model_type}")

    spec = proto.trainer_spec
    specials = {
        role: _content(config.get(f"{role}_token")) or default
        for role, default in (("bos", spec.bos_piece), ("eos", spec.eos_piece), ("unk", spec.unk_piece))
    }
    specials["pad"] = _content(config.get("pad_token")) or specials["eos"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        clean_up_tokenization_spaces=False,
        # InternLM2Tokenizer's defaults: every encoded text starts with BOS, none ends with EOS
        add_bos_token=config.get("add_bos_token", True),
        add_eos_token=config.get("add_eos_token", False),
        **{f"{role}_token": token for role, token in specials.items()},
    )
    _add_tokens(tokenizer, added, len(proto.pieces), path)
    return tokenizer


def _add_tokens(tokenizer: PreTrainedTokenizerFast, added: dict[int, dict], n_pieces: int, path: Path) -> None:
    """Add the config's added tokens, each at its configured id, matched on the raw text (normalized=False)."""
    for token_id in sorted(added):
        entry = added[token_id]
        token = AddedToken(
            _content(entry),
            single_word=entry.get("single_word", False),
            lstrip=entry.get("lstrip", False),
            rstrip=entry.get("rstrip", False),
            normalized=False,
            special=entry.get("special", True),
        )
        if token_id >= n_pieces and token_id != len(tokenizer):
            raise ConversionError(
                f"{path}: added token {token.content!r} has id {token_id}, but new ids must follow on from the "
                f"{len(tokenizer)} tokens before it"
            )
        tokenizer.add_tokens([token], special_tokens=token.special)
        if tokenizer.convert_tokens_to_ids(token.content) != token_id:
            raise ConversionError(f"{path}: added token {token.content!r} does not land on its id {token_id}")

