"""Where the hf engine's model comes from and what ends its sequences: a model folder, a GGUF
file, a Hub name or the embedded GGUF, each turned into what ``from_pretrained`` takes, with a
one-line error saying what to do when loading fails."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ttscale.engines.embedded import EMBEDDED_NAME, embedded_model_path
from ttscale.errors import ModelLoadError
from ttscale.hf_backend import quiet_loading

GGUF_MAGIC = b"GGUF"
# added tokens that end a turn or a document, which llama.cpp also stops at although a model's
# config may name only one of them as its EOS
END_MARKERS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
               "<end_of_turn>", "<|end|>", "<EOT>")


def load_model(transformers, source: str, gguf: str | None, torch_dtype: Any,
               trust_remote_code: bool) -> tuple[Any, Any]:
    """The tokenizer and the causal LM of ``source`` (and ``gguf``, a file in it)."""
    kwargs: dict[str, Any] = {}
    if gguf is not None:
        kwargs["gguf_file"] = gguf
    if trust_remote_code:  # only when asked: it runs the model repository's own code
        kwargs["trust_remote_code"] = True
    try:
        with quiet_loading(transformers):
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                source, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as error:
        raise ModelLoadError(_load_failure(source, gguf, error)) from error
    return tokenizer, model


def resolve_source(model, gguf_file) -> tuple[str, str | None, str, str]:
    """What to pass to ``from_pretrained``: the model folder (or Hub name), the GGUF file (or
    None), the model's display name and the path reported in ``ModelInfo``."""
    if model is None and gguf_file is None:
        path = embedded_model_path()
        return str(path.parent), path.name, EMBEDDED_NAME, str(path)
    if gguf_file is None and _looks_local(model):
        path = Path(model).expanduser()
        if not path.exists():
            raise ModelLoadError(f"model path {path} does not exist; give a Hugging Face model "
                                 "folder (with config.json), a .gguf file or a Hub name")
        if path.is_file():
            gguf_file, model = path, None
        elif not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} holds no config.json, so it is not a Hugging Face model "
                                 "folder; give the folder that save_pretrained wrote, or a .gguf "
                                 "file")
        else:
            return str(path), None, path.name, str(path)
    if gguf_file is None:  # a Hub name
        return str(model), None, str(model), str(model)
    path = Path(gguf_file).expanduser()
    if model is not None and not path.is_absolute():
        path = Path(model).expanduser() / path
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {path} does not exist")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ModelLoadError(f"{path} is not a GGUF file (no GGUF header) nor a model folder")
    return str(path.parent), path.name, path.stem, str(path)


def _looks_local(model) -> bool:
    """A path rather than a Hub name ("org/name"): it exists, or is written like a path."""
    text = os.fspath(model)
    return (not isinstance(model, str) or Path(text).expanduser().exists()
            or text.startswith((os.sep, ".", "~")) or text.endswith(".gguf")
            or text.count("/") > 1)


def _offline() -> bool:
    return any(os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _load_failure(source: str, gguf: str | None, error: Exception) -> str:
    """One line saying why transformers could not load the model and what to do."""
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if gguf is None and not Path(source).exists():
        if _offline():
            return (f"{source!r} is not a local folder and is not in the Hugging Face cache, and "
                    f"HF_HUB_OFFLINE is set: download it first (`hf download {source}`), give a "
                    "local folder, or unset HF_HUB_OFFLINE")
        return f"could not load {source!r} from the Hugging Face Hub: {detail}"
    what = f"{source}/{gguf}" if gguf else source
    return f"transformers could not load {what}: {detail}"


def eos_ids(tokenizer, model) -> set[int]:
    """Every token that ends a sequence: the tokenizer's, the configs' and the end markers."""
    added = {token.content: i for i, token in tokenizer.added_tokens_decoder.items()}
    ids = {added[marker] for marker in END_MARKERS if marker in added}
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None),
                  model.config.get_text_config().eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids
