"""What a SetVocabulary request may name. Class lists and built-in names are always fine; a file path
arrives in a message, so it is only opened inside the directories the operator allowed with the
`vocabulary_dirs` parameter (a message must not make the node read arbitrary files)."""
from __future__ import annotations

import os
from pathlib import Path

MODEL_DEFAULT = "default"  # the model's own vocabulary, as an empty `vocabulary` parameter
BUILTIN_VOCABULARIES = ("lvis", "coco", MODEL_DEFAULT)


class VocabularyRequestError(ValueError):
    pass


def model_vocabulary_spec(spec: str | list[str]) -> str | list[str] | None:
    """What the model is given for a vocabulary spec, on every path (the start-up parameter, a
    parameter change, SetVocabulary): None, its own vocabulary, for "" and "default"; a name or a
    path without surrounding blanks; a class list as it is."""
    if isinstance(spec, list):
        return spec
    name = spec.strip()
    return None if name in ("", MODEL_DEFAULT) else name


def parameter_vocabulary_spec(value: str, allowed_dirs: str, *, at_start_up: bool) -> str | None:
    """What the model is given for the `vocabulary` parameter, at start-up and when it is changed at run
    time alike: None (its own vocabulary) for "", "default" and blanks; a built-in name; a file name,
    looked up in `vocabulary_dirs` as SetVocabulary does. Only the start-up value, which the operator
    wrote, may also name a file outside those directories (relative to the working directory); at
    run time any participant can set parameters, so the vocabulary_dirs rule holds."""
    spec = model_vocabulary_spec(value)
    assert not isinstance(spec, list)  # a parameter value is a string
    if spec is None or spec in BUILTIN_VOCABULARIES:
        return spec
    try:
        return str(resolve_vocabulary_request(spec, [], allowed_dirs))
    except VocabularyRequestError:
        if at_start_up:
            return spec
        raise


def resolve_vocabulary_request(name: str, classes: list[str], allowed_dirs: str) -> str | list[str]:
    """The vocabulary spec to load: the class list, a built-in name, or a validated file path."""
    if classes:
        return list(classes)
    name = name.strip()
    if not name:
        raise VocabularyRequestError("give a vocabulary name (lvis, coco, default), a file, or a list of classes")
    if name in BUILTIN_VOCABULARIES:
        return name
    if "\x00" in name or len(name) > 4096:
        raise VocabularyRequestError("the vocabulary file name is not a valid path")
    roots = [Path(d).expanduser().resolve() for d in allowed_dirs.split(os.pathsep) if d.strip()]
    if not roots:
        raise VocabularyRequestError(
            f"'{name}' is not a built-in vocabulary ({', '.join(BUILTIN_VOCABULARIES)}), and files are only read "
            "from directories listed in the node's vocabulary_dirs parameter, which is empty")
    path = Path(name).expanduser()
    candidates = [path.resolve()] if path.is_absolute() else [(root / path).resolve() for root in roots]
    for candidate in candidates:
        if any(candidate == root or root in candidate.parents for root in roots):
            if candidate.is_file():
                return str(candidate)
            raise VocabularyRequestError(f"vocabulary file {candidate} does not exist")
    raise VocabularyRequestError(f"'{name}' lies outside the allowed vocabulary_dirs ({allowed_dirs})")
