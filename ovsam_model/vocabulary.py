"""Open vocabularies: class names, their CLIP text embeddings, and where both come from.

A :class:`Vocabulary` is what the recogniser compares region embeddings against: K class names
and a float32 tensor ``(K, P, D)`` of unit-norm text embeddings, P synonyms per class (classes
with fewer synonyms repeat their first one, so the max over P is unaffected).

Ways to get one:

- :func:`load_vocabulary` - from ``"lvis"``, ``"coco"``, a class-list text file or a list of
  names, encoded with the caller's text encoder and cached on disk;
- :func:`load_vocabulary_file` - a file written by :func:`save_vocabulary` (shipped next to
  weights);
- :func:`load_embedding_file` - the released precomputed tensor (e.g. LVIS ``(1203, 2, 768)``),
  which carries no names, so the caller supplies them.

Vocabulary file format (``save_vocabulary``): ``torch.save`` of a plain dict, loadable with
``torch.load(path, weights_only=True)``::

    {"format": "ovsam_vocabulary", "version": 1,
     "names": [str, ...],                 # K class names, in row order
     "embeddings": float32 Tensor (K, P, D), unit norm along D,
     "source": str,                       # where the names came from ("lvis", a path, ...)
     "model_key": str | None}             # the text encoder that produced the embeddings

Class-list text files: UTF-8, one class per line; blank lines and lines starting with ``#`` are
skipped; surrounding whitespace is stripped.

Every class appears once, as a typed query matches it (``text_query.canonical_class_name``): "Mug",
"mug" and "tennis_racket" / "Tennis racket" are one class each, so a list, a file or a vocabulary
holding both spellings is refused (two rows would split one object's score, and a query could
reach only the first).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from difflib import get_close_matches
from itertools import islice
from pathlib import Path
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ovsam_model.atomic_file import write_atomically
from ovsam_model.cache_location import cache_root
from ovsam_model.text_prompts import VILD_TEMPLATES, iter_prompts, split_synonyms
from ovsam_model.text_query import canonical_class_name, first_of_each_class

logger = logging.getLogger(__name__)

EncodeText = Callable[[list[str]], torch.Tensor]
"""Maps a batch of sentences to their (unnormalised) CLIP text embeddings, shape [T, D]."""

ClassSpec = Union[str, os.PathLike, Sequence[str]]
"""``"lvis"``, ``"coco"``, a path to a class-list text file, or the class names themselves."""

BUILTIN_CLASS_LISTS: tuple[str, ...] = ("coco", "lvis")
CLASS_NAMES_DIR = Path(__file__).resolve().parent / "class_names"  # package data: <name>.txt
DEFAULT_BATCH_SIZE = 256  # sentences per encode_text call: bounds peak memory of the text tower
DEFAULT_MAX_CLASSES = 50_000  # the paper's largest vocabulary is ~22,000 classes
MAX_NAME_LENGTH = 200  # a class is a short noun phrase; longer text is almost surely a mistake
VOCABULARY_FORMAT = "ovsam_vocabulary"
VOCABULARY_FORMAT_VERSION = 1
UNIT_NORM_TOLERANCE = 1e-3
# Bump when the way embeddings are computed changes, so old cache files stop matching.
_ENCODING_VERSION = 1


class VocabularyError(ValueError):
    """A class list, embedding file or vocabulary that cannot be used; the message says why."""


class UnknownClassError(KeyError):
    """A class name that is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------
# The Vocabulary type


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """K class names and their text embeddings ``(K, P, D)``, float32 on the CPU.

    Immutable: :meth:`subset` and :meth:`extend` return new vocabularies.
    """

    names: list[str]
    embeddings: torch.Tensor
    source: str = "names"
    model_key: str | None = None  # identifies the text encoder; None when unknown
    _positions: dict[str, int] = field(init=False, repr=False)
    _spellings: dict[str, str] = field(init=False, repr=False)  # canonical_class_name -> the name here

    def __post_init__(self) -> None:
        names = list(self.names)
        positions: dict[str, int] = {}
        first_of_class: dict[str, tuple[str, str]] = {}
        for position, name in enumerate(names):
            if not isinstance(name, str):
                raise VocabularyError(f"class names must be strings; entry {position} is {type(name).__name__}")
            _refuse_repeat(first_of_class, name, f"entry {position}", "the vocabulary")
            positions[name] = position
        embeddings = self.embeddings
        if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 3:
            shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise VocabularyError(f"vocabulary embeddings must be a tensor (K, P, D); got {shape}")
        if embeddings.shape[0] != len(names):
            raise VocabularyError(
                f"vocabulary has {len(names)} names but {embeddings.shape[0]} embedding rows"
            )
        if embeddings.shape[1] < 1 or embeddings.shape[2] < 1:
            raise VocabularyError(f"vocabulary embeddings have an empty axis: {tuple(embeddings.shape)}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "embeddings", embeddings.detach().to("cpu", torch.float32).contiguous())
        object.__setattr__(self, "_positions", positions)
        object.__setattr__(self, "_spellings", {key: name for key, (name, _) in first_of_class.items()})

    @property
    def size(self) -> int:
        """Number of classes K."""
        return len(self.names)

    @property
    def synonym_count(self) -> int:
        """Synonym rows per class P."""
        return int(self.embeddings.shape[1])

    @property
    def dim(self) -> int:
        """Embedding width D (the CLIP text projection's width)."""
        return int(self.embeddings.shape[2])

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:  # the default would print every name and the whole tensor
        shown = ", ".join(repr(name) for name in self.names[:5]) + (", ..." if self.size > 5 else "")
        return (
            f"Vocabulary(source={self.source!r}, size={self.size}, synonyms={self.synonym_count}, "
            f"dim={self.dim}, model_key={self.model_key!r}, names=[{shown}])"
        )

    def __contains__(self, name: object) -> bool:
        return name in self._positions

    def index(self, name: str) -> int:
        """Row of ``name``; raises :class:`UnknownClassError` naming close matches."""
        try:
            return self._positions[name]
        except KeyError:
            pass
        close = get_close_matches(name, self.names, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownClassError(
            f"class {name!r} is not in vocabulary {self.source!r} ({self.size} classes){hint}"
        )

    def spelling(self, name: str) -> str | None:
        """This vocabulary's name for the class `name` means, as a typed query matches it
        (``canonical_class_name``: "Tennis racket" finds "tennis_racket"); None when it has no such class."""
        return self._spellings.get(canonical_class_name(name))

    def subset(self, names: Sequence[str]) -> "Vocabulary":
        """The vocabulary restricted to ``names``, in the order given (all must be present)."""
        names = list(names)
        if not names:
            raise VocabularyError("a vocabulary subset needs at least one class name")
        rows = torch.tensor([self.index(name) for name in names], dtype=torch.long)
        return Vocabulary(names, self.embeddings[rows], source=self.source, model_key=self.model_key)

    def extend(
        self,
        names: Sequence[str],
        encode_text: EncodeText,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = False,
        max_classes: int = DEFAULT_MAX_CLASSES,
    ) -> "Vocabulary":
        """A vocabulary with the names not yet present appended (e.g. a text query's classes).

        A name is present when its class is (``canonical_class_name``: "Mug" finds "mug"). Existing
        rows are reused as they are; only the new names are encoded, with
        ``encode_text``, which must be the encoder that produced this vocabulary. Returns
        ``self`` when every name is already present.
        """
        # Repeats in a query ("cat, Cat") are harmless, so they are merged rather than refused; names
        # that are not strings go to validate_class_names as they are, which refuses them.
        if all(isinstance(name, str) for name in names):
            names = first_of_each_class(name.strip() for name in names)
        requested = validate_class_names(list(names), max_classes=max_classes, origin="the names to add")
        new_names = [name for name in requested if self.spelling(name) is None]
        if not new_names:
            return self
        if self.size + len(new_names) > max_classes:
            raise VocabularyError(
                f"adding {len(new_names)} classes to {self.size} would exceed the limit of "
                f"{max_classes:,} classes; raise max_classes if this is intended"
            )
        added = encode_class_names(encode_text, new_names, batch_size=batch_size, progress=progress)
        if added.shape[2] != self.dim:
            raise VocabularyError(
                f"encode_text gives {added.shape[2]}-d embeddings but the vocabulary holds {self.dim}-d "
                "ones: extend a vocabulary only with the text encoder that built it"
            )
        synonyms = max(self.synonym_count, int(added.shape[1]))
        merged = torch.cat([pad_synonyms(self.embeddings, synonyms), pad_synonyms(added, synonyms)])
        return Vocabulary(self.names + new_names, merged, source=self.source, model_key=self.model_key)


def pad_synonyms(embeddings: torch.Tensor, synonyms: int) -> torch.Tensor:
    """Grow ``(K, P, D)`` to ``(K, synonyms, D)`` by repeating each class's first synonym.

    A repeated synonym cannot change the max over synonyms, so padding never changes a score.
    """
    missing = synonyms - int(embeddings.shape[1])
    if missing < 0:
        raise ValueError(f"cannot pad {embeddings.shape[1]} synonyms down to {synonyms}")
    if missing == 0:
        return embeddings
    return torch.cat([embeddings, embeddings[:, :1].expand(-1, missing, -1)], dim=1)


# --------------------------------------------------------------------------------------------
# Encoding class names


def encode_class_names(
    encode_text: EncodeText,
    names: Sequence[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    templates: Sequence[str] = VILD_TEMPLATES,
) -> torch.Tensor:
    """Text embeddings ``(K, P, D)`` float32, unit norm, for class names.

    Each name is split into synonyms (:func:`~ovsam_model.text_prompts.split_synonyms`); each
    synonym's template sentences are encoded, each sentence embedding is normalised, they are
    averaged and the mean renormalised. Classes with fewer than P synonyms repeat their first.

    Sentences go to ``encode_text`` at most ``batch_size`` at a time and are folded into
    per-synonym sums straight away, so memory grows with the number of synonyms, not of
    sentences. ``progress`` shows a tqdm bar.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not templates:
        raise ValueError("at least one prompt template is needed")
    names = list(names)
    if not names:
        raise VocabularyError("there are no class names to encode")
    synonyms_per_class: list[list[str]] = []
    for name in names:
        synonyms = split_synonyms(name)
        if not synonyms:
            raise VocabularyError(
                f"class name {name!r} has no words left once split on ',', '/' and '_or_'; "
                "give every class a name"
            )
        synonyms_per_class.append(synonyms)
    all_synonyms = [synonym for synonyms in synonyms_per_class for synonym in synonyms]
    per_synonym = _encode_synonyms(encode_text, all_synonyms, templates, batch_size, progress)

    # Row indices into per_synonym: each class's own synonyms, then its first one repeated.
    width = max(len(synonyms) for synonyms in synonyms_per_class)
    rows = torch.empty(len(names), width, dtype=torch.long)
    first = 0
    for k, synonyms in enumerate(synonyms_per_class):
        count = len(synonyms)
        rows[k, :count] = torch.arange(first, first + count)
        rows[k, count:] = first
        first += count
    return per_synonym[rows].contiguous()


def _encode_synonyms(
    encode_text: EncodeText,
    synonyms: list[str],
    templates: Sequence[str],
    batch_size: int,
    progress: bool,
) -> torch.Tensor:
    """Template-averaged unit embeddings, one row per synonym ``(S, D)``."""
    per_synonym_templates = len(templates)
    total = len(synonyms) * per_synonym_templates
    sentences = iter_prompts(synonyms, templates)
    sums: torch.Tensor | None = None
    done = 0
    with torch.no_grad(), tqdm(
        total=total, disable=not progress, unit="text", desc="encoding class names", leave=False
    ) as bar:
        while done < total:
            batch = list(islice(sentences, batch_size))
            embeddings = encode_text(batch)
            if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2 or embeddings.shape[0] != len(batch):
                got = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
                raise VocabularyError(
                    f"encode_text must return a [T, D] tensor for T sentences; for {len(batch)} it returned {got}"
                )
            embeddings = embeddings.detach().to("cpu", torch.float32)
            norms = embeddings.norm(dim=-1, keepdim=True)
            if not torch.isfinite(embeddings).all() or bool((norms == 0).any()):
                bad = batch[int((~torch.isfinite(norms) | (norms == 0)).flatten().nonzero()[0])]
                raise VocabularyError(
                    f"encode_text returned a zero or non-finite embedding (e.g. for {bad!r}); "
                    "check the text tower's weights"
                )
            if sums is None:
                sums = torch.zeros(len(synonyms), embeddings.shape[1])
            elif embeddings.shape[1] != sums.shape[1]:
                raise VocabularyError(
                    f"encode_text changed its embedding width from {sums.shape[1]} to {embeddings.shape[1]}"
                )
            owners = torch.arange(done, done + len(batch)) // per_synonym_templates
            sums.index_add_(0, owners, embeddings / norms)
            done += len(batch)
            bar.update(len(batch))
    assert sums is not None  # total > 0 because every class has a synonym
    return F.normalize(sums / per_synonym_templates, dim=-1)


# --------------------------------------------------------------------------------------------
# Class lists: validation, files, built-ins


def validate_class_names(
    names: Sequence[str],
    *,
    max_classes: int = DEFAULT_MAX_CLASSES,
    origin: str = "the class list",
    locations: Sequence[str] | None = None,
) -> list[str]:
    """Checked, whitespace-stripped class names; raises :class:`VocabularyError` saying what to fix.

    ``locations`` names where each entry came from (e.g. ``"line 12"``) for the messages.
    """
    if isinstance(names, (str, bytes)):
        raise VocabularyError(f"{origin} must be a list of names, not a single string")
    names = list(names)
    if locations is None:
        locations = [f"entry {i}" for i in range(len(names))]
    if not names:
        raise VocabularyError(f"{origin} holds no class names; give at least one")
    if len(names) > max_classes:
        raise VocabularyError(
            f"{origin} has {len(names):,} classes, more than the limit of {max_classes:,}; "
            "split it, or raise the limit (max_classes) if you mean it"
        )
    cleaned: list[str] = []
    first_of_class: dict[str, tuple[str, str]] = {}
    for name, where in zip(names, locations):
        if not isinstance(name, str):
            raise VocabularyError(f"{origin}, {where}: class names must be strings, got {type(name).__name__}")
        name = name.strip()
        if not name:
            raise VocabularyError(f"{origin}, {where}: the class name is empty")
        if "\n" in name or "\r" in name:
            raise VocabularyError(f"{origin}, {where}: the class name {name[:40]!r}... contains a line break")
        if len(name) > MAX_NAME_LENGTH:
            raise VocabularyError(
                f"{origin}, {where}: the class name is {len(name)} characters long, over the limit of "
                f"{MAX_NAME_LENGTH} ({name[:40]!r}...); a class name is a short noun phrase"
            )
        if not split_synonyms(name):
            raise VocabularyError(
                f"{origin}, {where}: the class name {name!r} has no words once split on ',', '/' and '_or_'"
            )
        _refuse_repeat(first_of_class, name, where, origin)
        cleaned.append(name)
    return cleaned


def _refuse_repeat(first_of_class: dict[str, tuple[str, str]], name: str, where: str, origin: str) -> None:
    """Records `name` (found at `where`) under its class; raises when the class was seen before."""
    key = canonical_class_name(name)
    if key not in first_of_class:
        first_of_class[key] = (name, where)
        return
    first, first_where = first_of_class[key]
    spelled = "" if name == first else f", spelled {name!r}: case, '_' and spacing do not make another class"
    raise VocabularyError(
        f"{origin}: class name {first!r} appears twice ({first_where} and {where}{spelled}); "
        "each class must appear once"
    )


def read_class_file(path: str | os.PathLike, *, max_classes: int = DEFAULT_MAX_CLASSES) -> list[str]:
    """Class names from a UTF-8 text file: one per line, ``#`` comments and blank lines skipped."""
    path = Path(path).expanduser()
    if not path.exists():
        raise VocabularyError(
            f"class list file {str(path)!r} does not exist; pass 'lvis', 'coco', "
            "or a UTF-8 text file with one class name per line"
        )
    if not path.is_file():
        raise VocabularyError(f"class list {str(path)!r} is not a file")
    data = path.read_bytes()
    if data.startswith(b"PK\x03\x04") or b"\x00" in data:
        raise VocabularyError(
            f"{str(path)!r} is a binary file, not a class list; a vocabulary saved with "
            "save_vocabulary is read with load_vocabulary_file (CLI: ovsam-model vocab show)"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise VocabularyError(
            f"{str(path)!r} is not UTF-8 text (invalid byte at offset {error.start}); save it as UTF-8"
        ) from None
    names: list[str] = []
    locations: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        names.append(stripped)
        locations.append(f"line {number}")
    return validate_class_names(names, max_classes=max_classes, origin=str(path), locations=locations)


def builtin_class_names(name: str) -> list[str]:
    """The names of a built-in class list: ``"coco"`` (80) or ``"lvis"`` (1,203, LVIS v1 order)."""
    if name not in BUILTIN_CLASS_LISTS:
        raise VocabularyError(f"unknown built-in class list {name!r}; choose one of {', '.join(BUILTIN_CLASS_LISTS)}")
    resource = CLASS_NAMES_DIR / f"{name}.txt"
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VocabularyError(
            f"the built-in class list {name!r} is missing from the installed ovsam_model package "
            "(ovsam_model/class_names/); reinstall it with its package data"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def resolve_class_names(spec: ClassSpec, *, max_classes: int = DEFAULT_MAX_CLASSES) -> tuple[list[str], str]:
    """``(names, source)`` for a class spec.

    ``"lvis"`` and ``"coco"`` always mean the built-in lists (write ``./lvis`` for a file of
    that name); any other string or path is a class-list file; a sequence is the names.
    """
    if isinstance(spec, str) and spec in BUILTIN_CLASS_LISTS:
        return validate_class_names(builtin_class_names(spec), max_classes=max_classes, origin=spec), spec
    if isinstance(spec, (str, os.PathLike)):
        return read_class_file(spec, max_classes=max_classes), str(spec)
    return validate_class_names(spec, max_classes=max_classes), "names"


# --------------------------------------------------------------------------------------------
# Loading with an on-disk cache


def default_cache_dir() -> Path:
    """Where encoded vocabularies are cached.

    ``$OVSAM_CACHE_DIR/vocab`` when that variable is set (it is the root of all ovsam_ros
    caches), else ``~/.cache/ovsam_ros/vocab`` (``$XDG_CACHE_HOME`` is honoured).
    """
    return cache_root() / "vocab"


def vocabulary_cache_key(model_key: str, names: Sequence[str], templates: Sequence[str] = VILD_TEMPLATES) -> str:
    """Hex digest identifying (text encoder, class list, templates, encoding rule)."""
    description = json.dumps(
        {"encoding": _ENCODING_VERSION, "model_key": model_key, "templates": list(templates), "names": list(names)},
        ensure_ascii=False,
    )
    return hashlib.sha256(description.encode("utf-8")).hexdigest()


def vocabulary_cache_path(model_key: str, names: Sequence[str], cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache file that holds (or will hold) these names encoded by this text encoder."""
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return directory / f"{vocabulary_cache_key(model_key, names)[:40]}.pt"


def load_vocabulary(
    spec: ClassSpec,
    encode_text: EncodeText,
    *,
    model_key: str,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_classes: int = DEFAULT_MAX_CLASSES,
    use_cache: bool = True,
) -> Vocabulary:
    """The vocabulary for a class spec (see :func:`resolve_class_names`), encoded or from cache.

    ``model_key`` must identify the text encoder and its weights (see :func:`text_model_key`):
    it is part of the cache key, so another model never reuses these embeddings. A cache file
    that cannot be read or does not match is ignored, rebuilt and overwritten; a cache that
    cannot be written only costs a warning.
    """
    if not isinstance(model_key, str) or not model_key:
        raise ValueError("model_key must be a non-empty string identifying the text encoder and its weights")
    names, source = resolve_class_names(spec, max_classes=max_classes)
    cache_path = vocabulary_cache_path(model_key, names, cache_dir) if use_cache else None
    if cache_path is not None and cache_path.exists():
        cached = _read_cached_vocabulary(cache_path, names, model_key)
        if cached is not None:
            return Vocabulary(names, cached.embeddings, source=source, model_key=model_key)
    embeddings = encode_class_names(encode_text, names, batch_size=batch_size, progress=progress)
    vocabulary = Vocabulary(names, embeddings, source=source, model_key=model_key)
    if cache_path is not None:
        try:
            save_vocabulary(vocabulary, cache_path)
        except OSError as error:
            logger.warning("could not write the vocabulary cache %s (%s); continuing without it", cache_path, error)
    return vocabulary


def _read_cached_vocabulary(path: Path, names: list[str], model_key: str) -> Vocabulary | None:
    try:
        vocabulary = load_vocabulary_file(path)
    except Exception as error:  # noqa: BLE001 - any unreadable cache is rebuilt: a cache must never stop the node
        logger.warning("ignoring unreadable vocabulary cache %s (%s); rebuilding it", path, error)
        return None
    if vocabulary.names != names or vocabulary.model_key != model_key:
        logger.warning("ignoring vocabulary cache %s: it was built for other classes or another model", path)
        return None
    return vocabulary


# --------------------------------------------------------------------------------------------
# Files


def save_vocabulary(vocabulary: Vocabulary, path: str | os.PathLike) -> Path:
    """Write ``vocabulary`` in the documented format (module docstring), atomically."""
    payload = {
        "format": VOCABULARY_FORMAT,
        "version": VOCABULARY_FORMAT_VERSION,
        "names": list(vocabulary.names),
        "embeddings": vocabulary.embeddings.contiguous(),
        "source": vocabulary.source,
        "model_key": vocabulary.model_key,
    }
    return write_atomically(Path(path).expanduser(), lambda handle: torch.save(payload, handle))


def load_vocabulary_file(path: str | os.PathLike) -> Vocabulary:
    """A vocabulary written by :func:`save_vocabulary`."""
    path = Path(path).expanduser()
    payload = _torch_load(path, "vocabulary file")
    if isinstance(payload, torch.Tensor):
        raise VocabularyError(
            f"{str(path)!r} is a bare embedding tensor {tuple(payload.shape)} without class names; "
            "load it with load_embedding_file(path, names) (CLI: vocab show --classes ...)"
        )
    if not isinstance(payload, dict) or payload.get("format") != VOCABULARY_FORMAT:
        raise VocabularyError(f"{str(path)!r} is not an ovsam vocabulary file (no format={VOCABULARY_FORMAT!r} entry)")
    version = payload.get("version")
    if version != VOCABULARY_FORMAT_VERSION:
        raise VocabularyError(
            f"{str(path)!r} is vocabulary format version {version}; this ovsam_model reads version "
            f"{VOCABULARY_FORMAT_VERSION}: rebuild it with `ovsam-model vocab build`"
        )
    names, embeddings = payload.get("names"), payload.get("embeddings")
    if not isinstance(names, list) or not isinstance(embeddings, torch.Tensor):
        raise VocabularyError(f"{str(path)!r} lacks its 'names' list or 'embeddings' tensor")
    source = payload.get("source")
    model_key = payload.get("model_key")
    try:
        vocabulary = Vocabulary(
            names,
            embeddings,
            source=source if isinstance(source, str) else str(path),
            model_key=model_key if isinstance(model_key, str) else None,
        )
    except VocabularyError as error:
        raise VocabularyError(f"{str(path)!r}: {error}") from None
    _check_unit_norm(vocabulary.embeddings, str(path))
    return vocabulary


def load_embedding_file(
    path: str | os.PathLike,
    names: ClassSpec,
    *,
    source: str | None = None,
    model_key: str | None = None,
) -> Vocabulary:
    """The released precomputed embeddings (a bare float tensor ``(K, P, D)``) with their names.

    ``names`` is a class spec like in :func:`load_vocabulary`, e.g. ``"lvis"`` for the released
    ``(1203, 2, 768)`` LVIS file. A 2-D ``(K, D)`` tensor is read as one synonym per class.
    """
    path = Path(path).expanduser()
    class_names, names_source = resolve_class_names(names)
    tensor = _torch_load(path, "text embedding file")
    if isinstance(tensor, dict) and tensor.get("format") == VOCABULARY_FORMAT:
        raise VocabularyError(f"{str(path)!r} is an ovsam vocabulary file; load it with load_vocabulary_file(path)")
    if not isinstance(tensor, torch.Tensor):
        raise VocabularyError(
            f"{str(path)!r} holds a {type(tensor).__name__}, not a tensor of text embeddings (K, P, D)"
        )
    if tensor.ndim == 2:
        tensor = tensor[:, None, :]
    if tensor.ndim != 3 or not tensor.is_floating_point():
        raise VocabularyError(
            f"{str(path)!r} holds a {tensor.dtype} tensor of shape {tuple(tensor.shape)}; "
            "text embeddings are a float tensor (K, P, D)"
        )
    if tensor.shape[0] != len(class_names):
        raise VocabularyError(
            f"{str(path)!r} has embeddings for {tensor.shape[0]} classes but {names_source!r} names "
            f"{len(class_names)}: use the class list the file was built from"
        )
    tensor = tensor.to(torch.float32)
    _check_unit_norm(tensor, str(path))
    return Vocabulary(class_names, tensor, source=source or names_source, model_key=model_key)


def _torch_load(path: Path, what: str) -> object:
    if not path.is_file():
        raise VocabularyError(f"{what} {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many types; each becomes one VocabularyError
        raise VocabularyError(
            f"{what} {str(path)!r} cannot be read as a torch file ({type(error).__name__}: {str(error)[:200]})"
        ) from None


def _check_unit_norm(embeddings: torch.Tensor, where: str) -> None:
    if not bool(torch.isfinite(embeddings).all()):
        raise VocabularyError(f"{where}: the text embeddings contain NaN or infinite values")
    deviation = float((embeddings.norm(dim=-1) - 1).abs().max())
    if deviation > UNIT_NORM_TOLERANCE:
        raise VocabularyError(
            f"{where}: text embedding rows are not unit norm (largest |norm - 1| = {deviation:.3g}); "
            "this is not a file of normalised CLIP text embeddings"
        )


# --------------------------------------------------------------------------------------------
# Identifying the text encoder


def text_encoder_fingerprint(clip_model: nn.Module, skip_prefixes: Sequence[str] = ("visual.",)) -> str:
    """SHA-256 over the names, shapes, dtypes and values of a CLIP model's text-side state.

    The image tower (``visual.*``) is skipped: it does not change text embeddings, and hashing
    it would make fine-tuning the backbone invalidate every cached vocabulary.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(clip_model.state_dict().items()):
        if any(name.startswith(prefix) for prefix in skip_prefixes):
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def text_model_key(model_name: str, clip_model: nn.Module) -> str:
    """A ``model_key`` for :func:`load_vocabulary`: model name plus its text weights' fingerprint."""
    return f"{model_name}:{text_encoder_fingerprint(clip_model)[:16]}"
