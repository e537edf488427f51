"""Checkpoints: weights with the model's config, format and torch version, written atomically,
read without running code, and refused in one line (CheckpointError) when they cannot serve.

Weights made elsewhere serve too: a `.safetensors` file or a plain state_dict saved with
torch.save, built with model.py's default ModelConfig (a safetensors file may carry its own as
JSON in its metadata's "config").
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import torch
from torch import nn

from .model import MODEL
from .seam import to_device

CHECKPOINT_FORMAT = 1  # bump when the layout below changes; loading checks it


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable or of another format; the message says which."""


def resume_path(path: str | os.PathLike[str]) -> Path:
    """Where training keeps what `train --resume` needs (the weights with the optimizer state and
    step), beside the serving checkpoint, which carries the weights only."""
    path = Path(path)
    return path.with_name(f"{path.stem}.resume{path.suffix}")


def save_checkpoint(
    module: nn.Module,
    config,
    path: str | os.PathLike[str],
    *,
    train_args: dict | None = None,
    training_state: dict | None = None,
    **metadata: float,
) -> Path:
    """Write weights, config, format version, torch version and training arguments to `path`;
    with `training_state` (the optimizer's, to resume), everything to resume_path(path) first.
    Each is written atomically: a reader never sees half a file, and a failed write (a full
    disk, say) leaves the previous one as it was and no temporary file behind."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "torch": str(torch.__version__),  # a plain str: weights_only loads it
        "config": asdict(config),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "metadata": metadata,
        "train_args": train_args or {},
        "training_state": None,
    }
    if training_state is not None:
        write_atomically({**checkpoint, "training_state": training_state}, resume_path(path))
    return write_atomically(checkpoint, Path(path))


def write_atomically(contents: dict, path: Path) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(contents, tmp)
        tmp.replace(path)
    except (OSError, RuntimeError) as error:  # torch.save reports some write errors as RuntimeError
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"cannot write checkpoint {path}: {first_line(error)}"
            + ("; the previous one was left as it was" if path.exists() else "")
        ) from None
    return path


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def check_exists(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}: train one first ("
            f"`{{ cookiecutter.project_slug }} train --output {path}`, or `docker compose up`)"
        )


def torch_file(path: Path, device: str | torch.device) -> object:
    """What torch.save wrote; weights_only refuses pickled code. Raises CheckpointError."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        # Never pass on torch's advice to load with weights_only=False: that runs the file's code.
        reason = first_line(error)
        if "weights_only" in reason or "Weights only" in reason:
            reason = "not a checkpoint of tensors and plain data (refused: it could run code)"
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from None
    return checkpoint


def read_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict:
    """A checkpoint save_checkpoint wrote, checked for its format. Raises CheckpointError."""
    path = Path(path)
    check_exists(path)
    return checked_format(path, torch_file(path, device))


def checked_format(path: Path, checkpoint: object) -> dict:
    found = checkpoint.get("format") if isinstance(checkpoint, dict) else None
    if found is None:
        raise CheckpointError(
            f"{path} is neither this project's checkpoint nor a state_dict (names to tensors) "
            "nor a .safetensors file"
        )
    if found != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is checkpoint format {found}, this code reads format {CHECKPOINT_FORMAT}: "
            "train again"
        )
    return checkpoint


def is_state_dict(contents: object) -> bool:
    return (
        isinstance(contents, dict)
        and bool(contents)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in contents.items())
    )


def default_config(path: Path) -> dict:
    """model.py's ModelConfig with its defaults: what weights made elsewhere are built with."""
    if missing := [f.name for f in fields(MODEL.config_type)
                   if f.default is MISSING and f.default_factory is MISSING]:  # fmt: skip
        raise CheckpointError(
            f"{path} holds weights only, and model.py's ModelConfig has no default for "
            f"{', '.join(missing)}: give them defaults to serve weights made elsewhere"
        )
    return asdict(MODEL.config_type())


def read_safetensors(path: Path, device: str | torch.device) -> tuple[dict, dict]:
    """A safetensors file's weights and config (its metadata's "config", else the defaults)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device=str(device)) as file:
            state = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
            config = (file.metadata() or {}).get("config")
        config = json.loads(config) if config else None
    except Exception as error:  # safetensors' own SafetensorError, OSError, bad JSON
        raise CheckpointError(f"cannot read {path} as safetensors: {first_line(error)}") from None
    return (config or default_config(path)), state


def read_weights(path: Path, device: str | torch.device) -> tuple[object, object, dict]:
    """(config, state_dict, metadata) of a project checkpoint, a .safetensors file or a plain
    state_dict. Raises CheckpointError."""
    check_exists(path)
    if path.suffix == ".safetensors":
        return *read_safetensors(path, device), {}
    contents = torch_file(path, device)
    if is_state_dict(contents):
        return default_config(path), contents, {}
    checkpoint = checked_format(path, contents)
    return checkpoint.get("config"), checkpoint.get("state_dict"), checkpoint.get("metadata")


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, object, dict[str, float]]:
    """The module of a checkpoint written by save_checkpoint, a .safetensors file or a plain
    state_dict (in eval mode), its config and its metadata. Raises CheckpointError, in one line,
    for anything that would not serve correct answers."""
    path = Path(path)
    config, state, metadata = read_weights(path, device)
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{path} has no model config or weights: train again")
    known = {f.name for f in fields(MODEL.config_type)}
    if unknown := sorted(set(config) - known):
        raise CheckpointError(
            f"{path} has model settings this code does not know: {', '.join(map(str, unknown))}"
        )
    try:
        config = MODEL.config_type(**config)
        module = MODEL.build(config)
        module.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path}: its weights do not fit its model config ({first_line(error)})"
        ) from None
    if bad := [n for n, t in state.items() if t.is_floating_point() and not t.isfinite().all()]:
        raise CheckpointError(
            f"{path} holds non-finite weights ({', '.join(bad[:3])}): the training that wrote it "
            "diverged; train again"
        )
    module.to(device).eval()
    return module, config, metadata or {}


def load_for_serving(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """The checkpoint's module, refused in one line (CheckpointError) when it does not answer the
    seam's inputs with the seam's outputs (a model trained for another width, say)."""
    module, _, _ = load_checkpoint(path, device)
    rows = 2
    inputs = to_device(MODEL.example_inputs(rows), device)
    try:
        with torch.inference_mode():
            problem = MODEL.check_outputs(MODEL.predict(module, inputs), rows)
    except (RuntimeError, TypeError, ValueError, IndexError, KeyError) as error:
        problem = first_line(error)
    if problem:
        raise CheckpointError(
            f"{path} does not fit the inputs and outputs declared in model.py: {problem}"
        )
    return module
