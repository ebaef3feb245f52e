"""Released checkpoints in InternVL's "chat" layout -> beholder model folders (transformers' native InternVL).

  checkpoint     one local chat-layout folder -> one beholder model folder (convert_checkpoint)
  internvl_chat  config and weight mapping, InternLM2's fused wqkv split
  heads          HumanAesExpert's regression / expert / MetaVoter heads, read from tensor names and shapes
  tokenizer      the checkpoint's tokenizer as a fast tokenizer, without its remote code (spm: tokenizer.model)
  tensors        every source tensor used exactly once
"""

from beholder.convert.checkpoint import convert_checkpoint, is_chat_checkpoint
from beholder.convert.heads import HeadLayoutError
from beholder.convert.tensors import ConversionError

__all__ = ["ConversionError", "HeadLayoutError", "convert_checkpoint", "is_chat_checkpoint"]
