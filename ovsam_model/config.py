"""Model configurations as data.

A configuration is a JSON file under `ovsam_model/model_configs/`; `get_config` turns one into a
frozen `OVSAMConfig`. The same builder serves the released RN50x16 model and small test or
project-trained models, so every architectural size lives here and nowhere in the modules.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"

# Every role a complete model needs a file for; see weight_files.py for what each holds.
WEIGHT_ROLES = ("adapter", "decoder", "fpn", "prompt_encoder", "clip")


class ConfigError(ValueError):
    """A configuration file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class OVSAMConfig:
    name: str
    image_size: int
    clip: dict
    backbone_channels: tuple
    backbone_strides: tuple
    adapter: dict
    prompt_embed_dim: int
    decoder: dict
    text_dim: int
    fpn_channels: int
    roi_output_size: int
    roi_finest_scale: float
    pixel_mean: tuple
    pixel_std: tuple
    logit_scale: float
    weight_files: dict
    # role -> SHA-256 of the released file a configuration of the released model loads; loading
    # refuses a file with another digest. Only digests computed on the genuine files belong here.
    weight_sha256: dict = field(default_factory=dict)
    # SAM's prompt encoder keeps a mask-input branch even though OV-SAM never feeds it masks;
    # its channel count must match the checkpoint.
    prompt_mask_in_chans: int = 16
    # The evaluation-time CLIP attention-pool branch (see OVSAM.classify_with_clip_branch).
    use_clip_branch: bool = False
    clip_branch_alpha: float = 0.1
    clip_branch_beta: float = 0.9
    description: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def embedding_size(self) -> int:
        """Side of the adapter's output grid (SAM's image embedding), stride 16."""
        return self.image_size // 16

    @property
    def low_res_mask_size(self) -> int:
        """Side of the decoder's mask logits, stride 4."""
        return self.image_size // 4

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("backbone_channels", "backbone_strides", "pixel_mean", "pixel_std"):
            data[key] = list(data[key])
        return data

    def replace(self, **changes: Any) -> "OVSAMConfig":
        """A copy with some fields changed, e.g. `config.replace(image_size=256)`."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OVSAMConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown configuration field(s) {unknown}; known fields: {sorted(known)}")
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        )
        if missing:
            raise ConfigError(f"configuration is missing field(s) {missing}")
        values = dict(data)
        for key in ("backbone_channels", "backbone_strides", "pixel_mean", "pixel_std"):
            values[key] = tuple(values[key])
        return cls(**values)


def _validate(config: OVSAMConfig) -> None:
    where = f"configuration {config.name!r}"
    if config.image_size <= 0 or config.image_size % 32:
        raise ConfigError(f"{where}: image_size must be a positive multiple of 32, got {config.image_size}")
    if len(config.backbone_channels) != 4 or len(config.backbone_strides) != 4:
        raise ConfigError(f"{where}: backbone_channels and backbone_strides need 4 levels each")
    if "model_name" not in config.clip and "model_cfg" not in config.clip:
        raise ConfigError(f"{where}: clip needs 'model_name' (an open_clip built-in) or 'model_cfg' (a config dict)")
    for key in ("embed_dim", "depth", "num_heads", "mlp_ratio", "window_size", "global_attn_indexes"):
        if key not in config.adapter:
            raise ConfigError(f"{where}: adapter is missing {key!r}")
    for key in ("depth", "num_heads", "mlp_dim"):
        if key not in config.decoder:
            raise ConfigError(f"{where}: decoder is missing {key!r}")
    if config.prompt_embed_dim % 8:
        raise ConfigError(f"{where}: prompt_embed_dim must be divisible by 8 (the mask upscaling divides it by 8)")
    missing_roles = [role for role in WEIGHT_ROLES if role not in config.weight_files]
    if missing_roles:
        raise ConfigError(f"{where}: weight_files lacks role(s) {missing_roles}")
    for role, digest in config.weight_sha256.items():
        if role not in config.weight_files:
            raise ConfigError(f"{where}: weight_sha256 names role {role!r}, which weight_files lacks")
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise ConfigError(f"{where}: weight_sha256[{role!r}] must be 64 lowercase hex digits, got {digest!r}")


def list_configs() -> list[str]:
    """Names of the configurations shipped with the library."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.json"))


def get_config(name: str) -> OVSAMConfig:
    """A shipped configuration by name, or any configuration JSON file by path."""
    candidate = Path(name)
    if candidate.suffix == ".json" and candidate.is_file():
        path = candidate
    else:
        path = CONFIG_DIR / f"{name}.json"
        if not path.is_file():
            raise ConfigError(f"unknown model configuration {name!r}; available: {', '.join(list_configs())}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON ({error})") from error
    return OVSAMConfig.from_dict(data)
