"""Training checkpoints in safetensors: trainable weights + optimizer state + the step reached.

A checkpoint is one file, written to a temporary name and renamed, so a run killed while saving
leaves the previous checkpoint intact. Tensors are stored by parameter *name*
(``param.<name>``, ``optim.<name>.<state key>``), never by optimizer index, so a checkpoint can be
checked against the module it is loaded into. The metadata carries the step and a fingerprint of
everything that must match for a resume to continue the same run (config, data, trainable names).

Example:
    >>> import torch, tempfile
    >>> from curation.stage1.checkpoint import load_checkpoint, save_checkpoint
    >>> layer = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.AdamW(layer.parameters())
    >>> path = save_checkpoint(tempfile.mkdtemp(), dict(layer.named_parameters()), opt, step=3, fingerprint="x")
    >>> load_checkpoint(path, dict(layer.named_parameters()), opt, fingerprint="x")
    3
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from curation.errors import InputError

FORMAT = "curation.stage1.checkpoint/1"
FILE_NAME = "last.safetensors"


def checkpoint_path(directory: str | Path) -> Path:
    return Path(directory) / FILE_NAME


def save_checkpoint(
    directory: str | Path,
    params: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    *,
    step: int,
    fingerprint: str,
    extra: dict | None = None,
) -> Path:
    """Write ``last.safetensors`` atomically; returns its path.

    Args:
        params: the trainable parameters by name, in the order they were given to the optimizer.
        step: optimizer steps taken so far (the resume point).
        fingerprint: identity of the run; :func:`load_checkpoint` refuses a different one.
        extra: small JSON-able values to keep (losses so far, ...).
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = list(params)
    index = {id(p): n for n, p in params.items()}
    tensors = {f"param.{n}": p.detach().cpu().contiguous() for n, p in params.items()}
    for param, state in optimizer.state.items():
        name = index.get(id(param))
        if name is None:
            raise InputError("The optimizer holds a parameter that is not in `params`; cannot name its state.")
        for key, value in state.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{name}.{key}"] = value.detach().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "step": str(step),
        "fingerprint": fingerprint,
        "names": json.dumps(names),
        "extra": json.dumps(extra or {}),
    }
    path = checkpoint_path(directory)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def read_metadata(path: str | Path) -> dict:
    """The metadata of a checkpoint file (step as int, names and extra decoded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise InputError(f"Checkpoint {path} cannot be read ({e}); delete it to start over.") from e
    if meta.get("format") != FORMAT:
        raise InputError(f"{path} is not a Stage-1 training checkpoint (format {meta.get('format')!r}).")
    return meta | {"step": int(meta["step"]), "names": json.loads(meta["names"]), "extra": json.loads(meta["extra"])}


def load_checkpoint(
    path: str | Path,
    params: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    *,
    fingerprint: str,
) -> int:
    """Restore weights and optimizer state in place; returns the step to resume from.

    Raises:
        InputError: the checkpoint belongs to another run (fingerprint or parameter names differ).
    """
    from safetensors.torch import load_file

    meta = read_metadata(path)
    if meta["fingerprint"] != fingerprint:
        raise InputError(
            f"Checkpoint {path} is from a different run (config, data or trainable parameters changed); "
            "use another `checkpoint_dir` or delete it to start over."
        )
    if meta["names"] != list(params):
        raise InputError(f"Checkpoint {path} holds parameters {meta['names'][:3]}…, not this model's {list(params)[:3]}….")
    tensors = load_file(str(path))
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[f"param.{name}"].to(param.device, param.dtype))
    by_name = {n: p for n, p in params.items()}
    for name, param in by_name.items():
        prefix = f"optim.{name}."
        # AdamW keeps `step` on the CPU unless capturable; moments live with the parameter.
        state = {
            k[len(prefix) :]: v if k.endswith(".step") else v.to(param.device)
            for k, v in tensors.items()
            if k.startswith(prefix)
        }
        if state:
            optimizer.state[param] = state
    return meta["step"]
