"""Loading and writing OV-SAM weights in the released files' layout.

Every file is read with `weights_only=True` (no arbitrary unpickling), may be flat or wrapped as
`{'state_dict': ...}`, and is split by key prefix onto the submodule it belongs to (see
weight_files.ROLE_LAYOUTS). Mismatches are errors that name the file, the prefix and the keys.
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from .weight_files import LAYOUT_BY_ROLE, ROLE_LAYOUTS, RoleLayout

_LISTED_KEYS = 12  # keys quoted per category in an error message
_SAFETENSORS_MAGIC_OFFSET = 8


class CheckpointError(Exception):
    """A weight file is missing, unreadable, or does not match the model's keys and shapes."""


@dataclass
class LoadedFile:
    role: str
    path: Path
    sha256: str
    expected_sha256: str | None  # None: the configuration declares no digest for this role (or checks are off)
    keys_in_file: int
    keys_loaded: int
    parameters_loaded: int  # number of scalars loaded (parameters and persistent buffers)
    prefixes: tuple[str, ...]
    ignored_keys: int = 0  # keys outside the role's prefixes (e.g. the rest of SAM)
    missing_keys: list[str] = field(default_factory=list)  # only possible with strict=False
    unexpected_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[str] = field(default_factory=list)

    @property
    def hash_verified(self) -> bool | None:
        return None if self.expected_sha256 is None else self.sha256 == self.expected_sha256

    def describe(self) -> str:
        prefixes = ", ".join(p or "<whole file>" for p in self.prefixes)
        verified = {None: "no known digest", True: "digest verified", False: "DIGEST MISMATCH"}[self.hash_verified]
        text = (
            f"{self.role:<15} {self.path}\n"
            f"{'':<15} prefixes: {prefixes}; keys loaded {self.keys_loaded}/{self.keys_in_file}"
            f" (ignored {self.ignored_keys}); values {self.parameters_loaded:,}\n"
            f"{'':<15} sha256 {self.sha256} ({verified})"
        )
        for label, keys in (("missing", self.missing_keys), ("unexpected", self.unexpected_keys),
                            ("wrong shape", self.mismatched_keys)):
            if keys:
                text += f"\n{'':<15} {label}: {_quote(keys)}"
        return text


@dataclass
class LoadReport:
    files: list[LoadedFile] = field(default_factory=list)

    @property
    def parameters_loaded(self) -> int:
        return sum(item.parameters_loaded for item in self.files)

    @property
    def complete(self) -> bool:
        return all(not (f.missing_keys or f.unexpected_keys or f.mismatched_keys) for f in self.files)

    def by_role(self, role: str) -> LoadedFile:
        for item in self.files:
            if item.role == role:
                return item
        raise KeyError(role)

    def describe(self) -> str:
        lines = [item.describe() for item in self.files]
        lines.append(f"total values loaded: {self.parameters_loaded:,}")
        return "\n".join(lines)


def _quote(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED_KEYS])
    return shown + (f" ... (+{len(keys) - _LISTED_KEYS} more)" if len(keys) > _LISTED_KEYS else "")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as stream:
        head = stream.read(_SAFETENSORS_MAGIC_OFFSET + 1)
    return len(head) == _SAFETENSORS_MAGIC_OFFSET + 1 and head[-1:] == b"{"


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The flat tensor dict of a weight file (.pth/.bin via weights_only torch.load, or safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as error:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    try:
        try:
            content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            # Files in the legacy (pre-zip) format cannot be memory-mapped.
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors and plain containers, "
            f"and weight files are only read with weights_only=True. Re-save it as a plain state dict. ({error})"
        ) from error
    except Exception as error:
        if _looks_like_torchscript(path):
            raise CheckpointError(
                f"{path}: a TorchScript archive (such as OpenAI's RN50x16.pt), not a state dict. Use open_clip's "
                f"safetensors release instead (`ovsam-model download` fetches it)."
            ) from error
        raise CheckpointError(
            f"{path}: not a readable PyTorch weight file ({type(error).__name__}: {error})"
        ) from error
    if isinstance(content, Mapping) and isinstance(content.get("state_dict"), Mapping):
        content = content["state_dict"]
    if not isinstance(content, Mapping):
        raise CheckpointError(
            f"{path}: expected a state dict (a mapping of names to tensors), got {type(content).__name__}"
        )
    # Extra top-level entries such as 'meta' or an optimizer are not weights.
    tensors = {str(key): value for key, value in content.items() if isinstance(value, Tensor)}
    if tensors and all(key.startswith("module.") for key in tensors):
        tensors = {key[len("module."):]: value for key, value in tensors.items()}
    return tensors


def _looks_like_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _submodule(model: nn.Module, attribute_path: str) -> nn.Module:
    module = model
    for part in attribute_path.split("."):
        module = getattr(module, part)
    return module


def _select(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    if not prefix:
        return dict(state)
    start = prefix + "."
    return {key[len(start):]: value for key, value in state.items() if key.startswith(start)}


def _top_level_prefixes(state: Mapping[str, Tensor]) -> list[str]:
    return sorted({key.split(".", 1)[0] for key in state})


def _adapt_clip_entries(selected: dict[str, Tensor], expected: Mapping[str, Tensor]) -> None:
    # open_clip has stored logit_scale both as a scalar and as a 1-element vector.
    for name in ("logit_scale", "logit_bias"):
        if name in selected and name in expected and selected[name].numel() == expected[name].numel() == 1:
            selected[name] = selected[name].reshape(expected[name].shape)


def load_role(model: nn.Module, role: str, path: str | Path, strict: bool = True,
              verify_digests: bool = True) -> LoadedFile:
    """Load one role's file into `model`; see `load_weights`."""
    layout: RoleLayout = LAYOUT_BY_ROLE[role]
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"missing weight file {path} (role '{role}': {layout.what}). Fetch the released files with "
            f"`ovsam-model download --to {path.parent}`, or pass the right directory."
        )
    digest = sha256_of(path)
    config = getattr(model, "config", None)
    known = config.weight_sha256.get(role) if (verify_digests and config is not None) else None
    if known is not None and digest != known:
        raise CheckpointError(
            f"{path}: SHA-256 {digest} does not match the released file's {known} (role '{role}'); the file is "
            f"damaged or not the release: re-download it with `ovsam-model download --to {path.parent}`. "
            f"For your own weights under the released names, load with verify_digests=False "
            f"(the CLI's --no-verify-digests)."
        )
    state = read_state_dict(path)
    report = LoadedFile(
        role=role, path=path, sha256=digest, expected_sha256=known, keys_in_file=len(state), keys_loaded=0,
        parameters_loaded=0, prefixes=tuple(prefix for prefix, _ in layout.targets),
    )
    claimed = 0
    problems: list[str] = []
    for prefix, attribute_path in layout.targets:
        target = _submodule(model, attribute_path)
        selected = _select(state, prefix)
        claimed += len(selected)
        if not selected:
            raise CheckpointError(
                f"{path}: no keys start with '{prefix}.' (role '{role}' needs them for {attribute_path}); "
                f"the file's top-level prefixes are {_top_level_prefixes(state)[:_LISTED_KEYS]}"
            )
        expected = target.state_dict()
        if role == "clip":
            _adapt_clip_entries(selected, expected)
        shown = f"{prefix}." if prefix else ""
        missing = sorted(shown + key for key in expected.keys() - selected.keys())
        unexpected = sorted(shown + key for key in selected.keys() - expected.keys())
        mismatched = sorted(
            f"{shown}{key} (file {list(selected[key].shape)} vs model {list(expected[key].shape)})"
            for key in selected.keys() & expected.keys()
            if selected[key].shape != expected[key].shape
        )
        if missing or unexpected or mismatched:
            detail = "; ".join(
                f"{label} keys: {_quote(keys)}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong-shape", mismatched))
                if keys
            )
            problems.append(f"prefix '{prefix or '<whole file>'}' -> {attribute_path}: {detail}")
            report.missing_keys += missing
            report.unexpected_keys += unexpected
            report.mismatched_keys += mismatched
        loadable = {
            key: value for key, value in selected.items() if key in expected and value.shape == expected[key].shape
        }
        if problems and strict:
            continue
        target.load_state_dict(loadable, strict=False)
        report.keys_loaded += len(loadable)
        report.parameters_loaded += sum(value.numel() for value in loadable.values())
    if problems and strict:
        raise CheckpointError(f"{path} (role '{role}') does not match the model: " + " | ".join(problems))
    report.ignored_keys = len(state) - claimed
    if report.ignored_keys and not layout.other_keys_expected and strict:
        others = sorted(key for key in state if not any(key.startswith(p + ".") for p, _ in layout.targets))
        raise CheckpointError(
            f"{path} (role '{role}') has {len(others)} key(s) outside the prefixes {list(report.prefixes)}: "
            f"{_quote(others)}"
        )
    return report


def load_weights(
    model: nn.Module,
    weights_dir: str | Path,
    clip_weights: str | Path | None = None,
    strict: bool = True,
    verify_digests: bool = True,
) -> LoadReport:
    """Load every role's file named by `model.config.weight_files` from `weights_dir`.

    A file whose role has a digest in `model.config.weight_sha256` must match it (CheckpointError
    otherwise) unless `verify_digests` is False.
    `clip_weights` overrides where the CLIP file is read from. With strict=True any missing,
    unexpected or mis-shaped key raises CheckpointError; with strict=False the matching keys are
    loaded and the rest are listed in the report. A missing file is always an error.
    """
    weights_dir = Path(weights_dir)
    if not weights_dir.is_dir():
        raise CheckpointError(
            f"weights directory {weights_dir} does not exist; create it with `ovsam-model download --to {weights_dir}`"
        )
    report = LoadReport()
    for layout in ROLE_LAYOUTS:
        if layout.role == "clip" and clip_weights is not None:
            path = Path(clip_weights)
        else:
            path = weights_dir / model.config.weight_files[layout.role]
        report.files.append(load_role(model, layout.role, path, strict=strict, verify_digests=verify_digests))
    return report


def _detached(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # Clones so saved files never share storage (safetensors refuses shared tensors).
    return {key: value.detach().cpu().clone().contiguous() for key, value in state.items()}


def role_state_dict(model: nn.Module, role: str) -> dict[str, Tensor]:
    """The keys `role`'s file holds for this model, prefixed as in the released files."""
    layout = LAYOUT_BY_ROLE[role]
    state: dict[str, Tensor] = {}
    for prefix, attribute_path in layout.targets:
        for key, value in _submodule(model, attribute_path).state_dict().items():
            state[f"{prefix}.{key}" if prefix else key] = value
    return _detached(state)


def save_official_layout(model: nn.Module, out_dir: str | Path) -> dict[str, Path]:
    """Write the model as the released files (same names from the config, same prefixes).

    OV-SAM files are `{'state_dict': ...}`; the prompt-encoder file holds only `prompt_encoder.*`
    (not the rest of SAM); the CLIP file is a flat open_clip state dict (safetensors when its
    name ends in .safetensors) that `open_clip.load_checkpoint` accepts.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for layout in ROLE_LAYOUTS:
        path = out_dir / model.config.weight_files[layout.role]
        state = role_state_dict(model, layout.role)
        if layout.role == "clip":
            if path.suffix == ".safetensors":
                from safetensors.torch import save_file

                save_file(state, str(path))
            else:
                torch.save(state, path)
        else:
            torch.save({"state_dict": state}, path)
        written[layout.role] = path
    return written
