"""Class names and on-disk class identifiers, from the JSON files shipped in ``ucat/data/classnames``."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def load_names(name: str) -> tuple[str, ...]:
    text = resources.files("ucat.data").joinpath("classnames", f"{name}.json").read_text(encoding="utf-8")
    return tuple(json.loads(text))


@lru_cache(maxsize=None)
def all_source_ids() -> dict[str, tuple[str, ...]]:
    text = resources.files("ucat.data").joinpath("classnames", "_source_ids.json").read_text(encoding="utf-8")
    return {k: tuple(v) for k, v in json.loads(text).items()}
