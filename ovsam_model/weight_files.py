"""What each weight file holds, where the released ones come from, and what they should hash to.

A model's files are named by its configuration (`weight_files`: role -> file name); the roles
and their key prefixes below are shared by the released model and the project's own, so one
loader serves both. A digest is filled in only where it is published and agreed by independent
sources: Meta's SAM ViT-H checkpoint. The OV-SAM files' digests are not published and they could
not be downloaded here, so those slots are None: loading records the digest it sees but cannot
verify it. The configuration of the released model (`weight_sha256` in ovsam-rn50x16.json) is
what loading checks; the download command checks these.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RoleLayout:
    """How one role's file maps onto the model: key prefix -> attribute path of a submodule.

    An empty prefix means the whole file is that submodule's state dict.
    """

    role: str
    targets: tuple[tuple[str, str], ...]
    what: str
    # Keys outside the prefixes are ignored for files that carry more than we need (SAM's full
    # checkpoint); for the others they are reported.
    other_keys_expected: bool = False


# Load order matters: the FPN file's roi_conv overrides the decoder file's, as in the original.
ROLE_LAYOUTS: tuple[RoleLayout, ...] = (
    RoleLayout("clip", (("", "clip"),), "open_clip CLIP model (frozen image trunk and text tower)"),
    RoleLayout("adapter", (("neck_student", "neck_student"),), "SAM2CLIP adapter"),
    RoleLayout(
        "prompt_encoder",
        (("prompt_encoder", "prompt_encoder"),),
        "SAM prompt encoder",
        other_keys_expected=True,
    ),
    RoleLayout("decoder", (("mask_decoder", "mask_decoder"),), "CLIP2SAM decoder, label token/MLP, roi_conv"),
    RoleLayout("fpn", (("fpn_neck", "fpn_neck"), ("roi_conv", "mask_decoder.roi_conv")), "FPN and roi_conv override"),
)

LAYOUT_BY_ROLE = {layout.role: layout for layout in ROLE_LAYOUTS}


@dataclass(frozen=True)
class WeightSource:
    """One place a file can be fetched from: a Hugging Face repository file or a plain URL."""

    repo_id: str | None = None
    repo_type: str = "model"
    path_in_repo: str | None = None
    url: str | None = None

    def describe(self) -> str:
        if self.url:
            return self.url
        prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        return f"https://huggingface.co/{prefix}{self.repo_id}/blob/main/{self.path_in_repo}"


@dataclass(frozen=True)
class ReleasedFile:
    name: str
    role: str | None  # None: published with the model but not a model weight (e.g. class embeddings)
    approximate_size: str
    sources: tuple[WeightSource, ...]
    sha256: str | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)


OVSAM_MODEL_REPO = "HarborYuan/ovsam_models"
OVSAM_DEMO_SPACE = "HarborYuan/ovsam"


def _ovsam_sources(name: str) -> tuple[WeightSource, ...]:
    # The demo's files are known to live in the Space's models/ folder; the model repository is
    # the documented home of the weights and is tried first.
    return (
        WeightSource(repo_id=OVSAM_MODEL_REPO, path_in_repo=name),
        WeightSource(repo_id=OVSAM_DEMO_SPACE, repo_type="space", path_in_repo=f"models/{name}"),
    )


RELEASED_FILES: dict[str, ReleasedFile] = {
    item.name: item
    for item in (
        ReleasedFile("sam2clip_vith_rn50.pth", "adapter", "536 MB", _ovsam_sources("sam2clip_vith_rn50.pth")),
        ReleasedFile("ovsam_R50x16_lvisnorare.pth", "decoder", "16 MB", _ovsam_sources("ovsam_R50x16_lvisnorare.pth")),
        ReleasedFile(
            "R50x16_fpn_lvis_norare_v3det.pth", "fpn", "16 MB", _ovsam_sources("R50x16_fpn_lvis_norare_v3det.pth")
        ),
        ReleasedFile(
            "sam_vit_h_4b8939.pth",
            "prompt_encoder",
            "2.4 GB",
            (WeightSource(url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"),),
            sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            notes="Meta's full SAM ViT-H checkpoint; only its prompt_encoder.* keys are used.",
        ),
        ReleasedFile(
            "clip_RN50x16_openai.safetensors",
            "clip",
            "1.2 GB",
            (
                WeightSource(repo_id="timm/resnet50x16_clip.openai", path_in_repo="open_clip_model.safetensors"),
                WeightSource(repo_id="timm/resnet50x16_clip.openai", path_in_repo="open_clip_pytorch_model.bin"),
            ),
            notes="OpenAI CLIP RN50x16 as open_clip publishes it; stored locally as safetensors.",
        ),
        ReleasedFile(
            "RN50x16_LVISV1Dataset.pth",
            None,
            "7 MB",
            _ovsam_sources("RN50x16_LVISV1Dataset.pth"),
            notes="LVIS class text embeddings (1203, 2, 768) used by the demo; not a model weight.",
        ),
    )
}


def released_file(name: str) -> ReleasedFile | None:
    return RELEASED_FILES.get(name)


def expected_sha256(name: str) -> str | None:
    """The published SHA-256 of a released file name, or None when unknown."""
    item = RELEASED_FILES.get(name)
    return item.sha256 if item else None
