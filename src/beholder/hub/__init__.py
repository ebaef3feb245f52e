"""Where a model comes from: a local folder, a released model by preset name or hub id (downloaded once,
converted once into beholder's cache), or the hub id of a beholder model folder.

  resolve   name -> local model folder, with errors that say what to do (down to the `beholder convert` command)
  cache     released checkpoints: download once, convert once into the cache, reuse; convert_source for the CLI
  download  huggingface_hub snapshots of safetensors, configs and tokenizer files only
The preset names and hub ids themselves are data in beholder.presets.
"""

from beholder.hub.cache import cache_dir, convert_source, fetch_converted
from beholder.hub.download import HubUnreachableError, download_snapshot
from beholder.hub.resolve import resolve_folder

__all__ = ["HubUnreachableError", "cache_dir", "convert_source", "download_snapshot", "fetch_converted",
           "resolve_folder"]
