"""What the transformers-based parts (the hf engine, in-process PRMs) share: importing the
optional backend, devices, dtypes, and quiet loading. torch stays out of the core install."""

from __future__ import annotations

from contextlib import contextmanager

from ttscale.errors import ConfigError, ModelLoadError

INSTALL_HINT = "pip install 'ttscale[hf]'"
DTYPES = ("auto", "float32", "bfloat16", "float16")


def import_backend(purpose: str):
    """``(torch, transformers)``, or an error that says which extra to install."""
    try:
        import torch
        import transformers
    except ImportError as error:
        raise ModelLoadError(f"{purpose} needs torch and transformers ({error}); install them "
                             f"with: {INSTALL_HINT}") from error
    return torch, transformers


def check_device(torch, device: str):
    """The ``torch.device`` for a cpu / cuda / cuda:N string, checked against the machine."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}") from error
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device} asked for, but torch sees no CUDA GPU (is "
                                 "this a CPU-only torch build?); use cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {device} asked for, but torch sees only "
                                 f"{torch.cuda.device_count()} CUDA GPU(s)")
    return parsed


def resolve_dtype(torch, dtype: str, device) -> object:
    """``auto`` is bfloat16 on a GPU and float32 on a CPU (CPU bf16 matmuls are slow)."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return getattr(torch, dtype)


@contextmanager
def quiet_loading(transformers):
    """Mute transformers' load report and progress bars: loading a backbone out of a PRM
    checkpoint lists the head's tensors as unexpected, which they are not (ttscale applies
    the head itself)."""
    logging_utils = transformers.utils.logging
    level = logging_utils.get_verbosity()
    logging_utils.set_verbosity_error()
    logging_utils.disable_progress_bar()
    try:
        yield
    finally:
        logging_utils.set_verbosity(level)
        logging_utils.enable_progress_bar()
