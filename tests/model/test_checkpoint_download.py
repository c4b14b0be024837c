"""`ovsam-model download` with the network replaced: what it asks for and where files land."""
from pathlib import Path

import pytest
import torch

from ovsam_model import get_config
from ovsam_model.checkpoint import read_state_dict
from ovsam_model.cli import main
from ovsam_model.commands import download
from ovsam_model.commands.download import DownloadError, files_to_fetch


class LocalEntryNotFoundError(Exception):
    """Stands in for huggingface_hub's offline error (matched by name)."""


class EntryNotFoundError(Exception):
    """Stands in for a 404 from the hub: the file is not in that repository."""


class FakeNetwork:
    def __init__(self, missing: set[tuple[str, str]] = frozenset(), offline: bool = False) -> None:
        self.missing = set(missing)
        self.offline = offline
        self.hub_calls: list[dict] = []
        self.url_calls: list[str] = []

    def hf_hub_download(self, *, repo_id: str, filename: str, repo_type: str, local_dir: str) -> str:
        self.hub_calls.append({"repo_id": repo_id, "filename": filename, "repo_type": repo_type})
        if self.offline:
            raise LocalEntryNotFoundError("cannot reach the hub")
        if (repo_id, filename) in self.missing:
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        if filename.endswith(".bin"):
            torch.save({"visual.proj": torch.arange(6.0).reshape(2, 3)}, path)
        else:
            path.write_bytes(f"{repo_id}/{filename}".encode())
        return str(path)

    def fetch_url(self, url: str, destination: Path) -> None:
        self.url_calls.append(url)
        if self.offline:
            raise OSError("URLError: name resolution failed")
        destination.write_bytes(url.encode())


@pytest.fixture()
def network(monkeypatch) -> FakeNetwork:
    fake = FakeNetwork()
    monkeypatch.setattr(download, "hf_hub_download", fake.hf_hub_download)
    monkeypatch.setattr(download, "_fetch_url", fake.fetch_url)
    return fake


def test_the_released_model_needs_its_five_files_and_the_lvis_embeddings() -> None:
    names = [item.name for item in files_to_fetch("ovsam-rn50x16")]
    assert names[:5] == list(get_config("ovsam-rn50x16").weight_files.values())
    assert names[5:] == ["RN50x16_LVISV1Dataset.pth"]
    assert [item.name for item in files_to_fetch("ovsam-rn50x16", only=["fpn"])] == ["R50x16_fpn_lvis_norare_v3det.pth"]
    with pytest.raises(DownloadError, match="never published"):
        files_to_fetch("ovsam-tiny")
    with pytest.raises(DownloadError, match="unknown role"):
        files_to_fetch("ovsam-rn50x16", only=["backbone"])


SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"


@pytest.fixture()
def fake_sam_digest(monkeypatch) -> None:
    """The fake network serves the URL's bytes for SAM: publish their digest for the test."""
    import dataclasses
    import hashlib

    from ovsam_model.weight_files import RELEASED_FILES

    item = RELEASED_FILES["sam_vit_h_4b8939.pth"]
    monkeypatch.setitem(RELEASED_FILES, item.name,
                        dataclasses.replace(item, sha256=hashlib.sha256(SAM_URL.encode()).hexdigest()))


def test_a_file_without_the_published_digest_is_refused(network: FakeNetwork, tmp_path: Path, capsys) -> None:
    assert main(["download", "--to", str(tmp_path), "--only", "prompt_encoder"]) == 1
    assert "SHA-256 is not the published a7bf3b02" in capsys.readouterr().err
    assert not (tmp_path / "sam_vit_h_4b8939.pth").exists()


def test_download_puts_every_file_under_its_expected_name(network: FakeNetwork, tmp_path: Path, capsys,
                                                          fake_sam_digest) -> None:
    assert main(["download", "--to", str(tmp_path)]) == 0
    expected = list(get_config("ovsam-rn50x16").weight_files.values()) + ["RN50x16_LVISV1Dataset.pth"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
    assert network.hub_calls[0] == {"repo_id": "HarborYuan/ovsam_models", "filename": "sam2clip_vith_rn50.pth",
                                    "repo_type": "model"}
    assert (tmp_path / "ovsam_R50x16_lvisnorare.pth").read_bytes() == (b"HarborYuan/ovsam_models/"
                                                                       b"ovsam_R50x16_lvisnorare.pth")
    assert network.url_calls == ["https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"]
    assert {"repo_id": "timm/resnet50x16_clip.openai", "filename": "open_clip_model.safetensors",
            "repo_type": "model"} in network.hub_calls
    assert "load-check --weights" in capsys.readouterr().out


def test_falls_back_to_the_demo_space(network: FakeNetwork, tmp_path: Path) -> None:
    network.missing = {("HarborYuan/ovsam_models", "R50x16_fpn_lvis_norare_v3det.pth")}
    assert main(["download", "--to", str(tmp_path), "--only", "fpn"]) == 0
    assert network.hub_calls[-1] == {"repo_id": "HarborYuan/ovsam",
                                     "filename": "models/R50x16_fpn_lvis_norare_v3det.pth", "repo_type": "space"}
    assert (tmp_path / "R50x16_fpn_lvis_norare_v3det.pth").is_file()


def test_clip_bin_release_is_stored_as_safetensors(network: FakeNetwork, tmp_path: Path) -> None:
    network.missing = {("timm/resnet50x16_clip.openai", "open_clip_model.safetensors")}
    assert main(["download", "--to", str(tmp_path), "--only", "clip"]) == 0
    stored = read_state_dict(tmp_path / "clip_RN50x16_openai.safetensors")
    assert torch.equal(stored["visual.proj"], torch.arange(6.0).reshape(2, 3))
    assert not (tmp_path / ".download").exists()


def test_existing_files_are_kept(network: FakeNetwork, tmp_path: Path) -> None:
    (tmp_path / "ovsam_R50x16_lvisnorare.pth").write_bytes(b"already here")
    assert main(["download", "--to", str(tmp_path), "--only", "decoder"]) == 0
    assert network.hub_calls == []
    assert (tmp_path / "ovsam_R50x16_lvisnorare.pth").read_bytes() == b"already here"


def test_offline_fails_fast_with_the_files_to_copy(network: FakeNetwork, tmp_path: Path, capsys) -> None:
    network.offline = True
    assert main(["download", "--to", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert len(network.hub_calls) == 2 and network.url_calls == []  # one file's two sources, then it stops
    assert "offline" in err
    for name in get_config("ovsam-rn50x16").weight_files.values():
        assert name in err
    assert not any(tmp_path.iterdir())


def test_dry_run_lists_sources_without_fetching(network: FakeNetwork, tmp_path: Path, capsys) -> None:
    assert main(["download", "--to", str(tmp_path / "w"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "https://huggingface.co/HarborYuan/ovsam_models/blob/main/sam2clip_vith_rn50.pth" in out
    assert network.hub_calls == [] and not (tmp_path / "w").exists()
