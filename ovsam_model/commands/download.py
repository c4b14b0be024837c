"""`ovsam-model download`: fetch the released weight files into one directory.

    ovsam-model download --to DIR [--model ovsam-rn50x16] [--only ROLE ...] [--skip-vocabulary] [--dry-run]

OV-SAM's own files come from the Hugging Face model repository HarborYuan/ovsam_models (the demo
Space HarborYuan/ovsam as a fallback), CLIP RN50x16 from open_clip's Hugging Face release and the
prompt encoder from Meta's SAM ViT-H checkpoint. Files already present are kept. Every file is
saved under the name the configuration expects, so `load-check --weights DIR` works right after.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import urllib.request
from pathlib import Path

from ovsam_model.atomic_file import write_atomically
from ovsam_model.weight_files import RELEASED_FILES, ReleasedFile, WeightSource

STAGING_DIR_NAME = ".download"


class DownloadError(Exception):
    def __init__(self, message: str, offline: bool = False) -> None:
        super().__init__(message)
        self.offline = offline  # every source failed to connect: no point trying the other files


# Names (not classes) so that neither requests, httpx nor huggingface_hub has to be imported.
_CONNECTION_FAILURES = {
    "LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectTimeout", "ConnectError",
    "URLError", "gaierror", "TimeoutError", "socket.timeout",
}


def _is_connection_failure(error: BaseException | None) -> bool:
    seen = 0
    while error is not None and seen < 10:
        if type(error).__name__ in _CONNECTION_FAILURES:
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("download", help="fetch the released OV-SAM weight files")
    parser.add_argument("--to", required=True, help="directory to put the files in (created if needed)")
    parser.add_argument("--model", default="ovsam-rn50x16",
                        help="configuration whose files to fetch (default: ovsam-rn50x16)")
    parser.add_argument("--only", nargs="+", metavar="ROLE", default=None,
                        help="fetch only these roles (adapter, decoder, fpn, prompt_encoder, clip)")
    parser.add_argument("--skip-vocabulary", action="store_true",
                        help="do not fetch the released LVIS class embeddings")
    parser.add_argument("--dry-run", action="store_true", help="list what would be fetched from where, fetch nothing")
    parser.set_defaults(handler=run)


def files_to_fetch(model: str, only: list[str] | None = None, with_vocabulary: bool = True) -> list[ReleasedFile]:
    """The released files a configuration needs, in a stable order."""
    from ovsam_model.config import get_config

    config = get_config(model)
    roles = list(config.weight_files) if only is None else list(only)
    unknown_roles = [role for role in roles if role not in config.weight_files]
    if unknown_roles:
        raise DownloadError(f"unknown role(s) {unknown_roles}; roles of {config.name}: {list(config.weight_files)}")
    wanted: list[ReleasedFile] = []
    unpublished: list[str] = []
    for role in roles:
        name = config.weight_files[role]
        item = RELEASED_FILES.get(name)
        if item is None:
            unpublished.append(f"{role}: {name}")
        else:
            wanted.append(item)
    if unpublished:
        raise DownloadError(
            f"configuration {config.name} names files that were never published ({', '.join(unpublished)}); "
            f"produce them with the project's training tools or copy them into the weights directory"
        )
    if with_vocabulary and only is None:
        wanted.extend(item for item in RELEASED_FILES.values() if item.role is None)
    return wanted


def hf_hub_download(**kwargs) -> str:
    # Imported on use so that building the CLI parser does not pay for huggingface_hub.
    from huggingface_hub import hf_hub_download as download

    return download(**kwargs)


def _fetch_url(url: str, destination: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response:
        write_atomically(destination, lambda stream: shutil.copyfileobj(response, stream, length=1 << 22))


def _fetch_from_source(source: WeightSource, staging: Path) -> Path:
    if source.url:
        target = staging / Path(source.url).name
        _fetch_url(source.url, target)
        return target
    return Path(
        hf_hub_download(
            repo_id=source.repo_id,
            filename=source.path_in_repo,
            repo_type=source.repo_type,
            local_dir=str(staging),
        )
    )


def _store(fetched: Path, destination: Path) -> None:
    if destination.suffix == ".safetensors" and fetched.suffix != ".safetensors":
        # open_clip's .bin release holds the same tensors; keep one format under the expected name.
        from safetensors.torch import save_file

        from ovsam_model.checkpoint import read_state_dict

        save_file({k: v.contiguous() for k, v in read_state_dict(fetched).items()}, str(destination))
        fetched.unlink()
    else:
        shutil.move(str(fetched), destination)


def fetch_file(item: ReleasedFile, directory: Path) -> tuple[Path, WeightSource]:
    """Fetch one file into `directory` from its first reachable source whose file has the published digest."""
    from ovsam_model.checkpoint import sha256_of

    destination = directory / item.name
    staging = directory / STAGING_DIR_NAME
    staging.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    offline = True
    for source in item.sources:
        try:
            fetched = _fetch_from_source(source, staging)
            if item.sha256 is not None and sha256_of(fetched) != item.sha256:
                fetched.unlink()
                raise DownloadError(f"the file's SHA-256 is not the published {item.sha256}")
            _store(fetched, destination)
            return destination, source
        except Exception as error:  # noqa: BLE001 - network, HTTP and hub errors all mean "try the next source"
            offline = offline and _is_connection_failure(error)
            failures.append(f"  {source.describe()}: {type(error).__name__}: {error}")
    raise DownloadError(f"could not fetch {item.name} from any source:\n" + "\n".join(failures), offline=offline)


def run(args: argparse.Namespace) -> int:
    directory = Path(args.to)
    try:
        wanted = files_to_fetch(args.model, args.only, with_vocabulary=not args.skip_vocabulary)
    except (DownloadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for item in wanted:
            print(f"{item.name} ({item.approximate_size}) <- " + " | ".join(s.describe() for s in item.sources))
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    failed: list[ReleasedFile] = []
    offline = False
    for item in wanted:
        destination = directory / item.name
        if destination.is_file():
            print(f"have  {destination}")
            continue
        if offline:
            failed.append(item)
            continue
        print(f"fetch {item.name} ({item.approximate_size}) ...", flush=True)
        try:
            path, source = fetch_file(item, directory)
        except DownloadError as error:
            print(f"error: {error}", file=sys.stderr)
            failed.append(item)
            offline = error.offline
            continue
        print(f"got   {path} from {source.describe()}")
    shutil.rmtree(directory / STAGING_DIR_NAME, ignore_errors=True)
    if failed:
        reason = (
            "no connection to the download servers: this machine is offline (or HF_HUB_OFFLINE is set, or a proxy "
            "is needed), so the remaining files were not attempted"
            if offline
            else "see the errors above"
        )
        print(
            f"\n{len(failed)} file(s) could not be downloaded: {reason}. "
            f"Fetch them on a connected machine and copy them into {directory} under these names:",
            file=sys.stderr,
        )
        for item in failed:
            print(f"  {item.name}  <- {item.sources[0].describe()}", file=sys.stderr)
        return 1
    print(f"all files present in {directory}; check them with: ovsam-model load-check --weights {directory}")
    return 0
