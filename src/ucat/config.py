"""Parameters: load ``params.yaml`` (optionally overlaid), validate against the schema.

The schema (``resources/params.schema.yaml``) requires every key and forbids unknown
ones, so a typo stops a run before any work, naming the key.  Snakemake validates its
``config`` against the same file (``workflow/schemas/config.schema.yaml`` links to it).
One rule JSON Schema cannot state is added by the validator here: a ``number`` is finite,
so NaN or infinity in any numeric key is refused (YAML's ``.nan``/``.inf`` parse as floats).
"""

from __future__ import annotations

import copy
import functools
import math
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError

DEFAULT_PARAMS = "params.yaml"


@functools.cache
def schema() -> dict:
    text = resources.files("ucat").joinpath("resources/params.schema.yaml").read_text()
    return yaml.safe_load(text)


@functools.cache
def _validator_class():
    """Draft 2020-12 whose ``number`` type excludes NaN and infinity."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "number", lambda c, x: base.TYPE_CHECKER.is_type(x, "number") and math.isfinite(x))
    return jsonschema.validators.extend(base, type_checker=checker)


def _key_path(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if isinstance(error.instance, float) and not math.isfinite(error.instance):
        return f"{path}: must be a finite number, got {error.instance}"
    if error.validator == "pattern" and error.schema.get("description"):
        return f"{path}: {error.instance!r} is not allowed: {error.schema['description']}"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        where = f"{path}." if path else ""
        return f"{where}{extra[0]}: unknown key; allowed here: {allowed}"
    if error.validator == "required":
        return f"{path or '<top>'}: {error.message}"
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{path}: unknown value {error.instance!r}; allowed: {allowed}"
    return f"{path}: {error.message}"


def validate(params: Mapping[str, Any], source: str = "params") -> dict:
    """Return ``params`` as a plain dict, or raise ConfigError naming the first bad key.

    The result carries ``run.seed``, the training seed this process works for (the stages' ``--seed``;
    by default the first of ``run.seeds``): a runtime value, never written in a parameters file."""
    params = copy.deepcopy(dict(params))
    run = params.get("run")
    seed = run.pop("seed", None) if isinstance(run, dict) else None
    validator = _validator_class()(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ConfigError(f"{source}: {_key_path(errors[0])}")
    _check_consistency(params, source)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ConfigError(f"{source}: run.seed: must be a non-negative integer, got {seed!r}")
    params["run"]["seed"] = params["run"]["seeds"][0] if seed is None else seed
    return params


def _check_consistency(p: dict, source: str) -> None:
    """Cross-key rules a JSON schema cannot express."""
    if "demo_train" in p["data"]["datasets"]:
        raise ConfigError(f"{source}: data.datasets: demo_train is the fine-tuning set, not a zero-shot evaluation set")
    if "clean" in p["evaluate"]["attacks"]:
        attacks = [a for a in schema()["$defs"]["attack"]["enum"] if a != "clean"]
        raise ConfigError(f"{source}: evaluate.attacks: clean is always evaluated (every attack's reference); "
                          f"list only the attacks ({', '.join(attacks)})")
    names = [m["name"] for m in p["backbone"]["models"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: backbone.models: names must be unique, got {names}")
    if p["backbone"]["source"] == "demo" and len(names) != 1:
        raise ConfigError(f"{source}: backbone.models: the demo source builds exactly one model, got {len(names)}")
    if p["backbone"]["source"] == "demo" and not all(d.startswith("demo_") for d in p["data"]["datasets"] + [p["data"]["finetune"]]):
        raise ConfigError(f"{source}: data.datasets: the demo backbone only understands the demo_* data sets")


def file_form(params: Mapping[str, Any]) -> dict:
    """``params`` as a parameters file holds them: without the runtime ``run.seed``."""
    out = copy.deepcopy(dict(params))
    out["run"] = {k: v for k, v in out["run"].items() if k != "seed"}
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r})") from None
    data = _parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return data


def _parse_yaml(text: str, source: str):
    """yaml.safe_load with a one-line error: where, then what."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: not valid YAML{where}: {' '.join(str(what).split())}") from None


# what each load returned, so a command can check at its end that the file did not change under it
_LOADED: dict[tuple[str, tuple[str, ...]], dict] = {}


def load(path: str | Path = DEFAULT_PARAMS, overrides: list[str] | None = None) -> dict:
    """Read and validate a parameters file; ``overrides`` are ``key.sub=value`` strings (YAML values)."""
    params = _load(path, overrides)
    _LOADED[(str(Path(path).resolve()), tuple(overrides or ()))] = copy.deepcopy(params)
    return params


def changed_since_load() -> str | None:
    """Which value of a parameters file loaded by this process differs now (None: none does).

    DVC runs a stage on the live params.yaml and records the values it finds after the stage:
    an edit made while the stage ran would pair outputs with values they were not made with."""
    for (path, overrides), then in _LOADED.items():
        try:
            now = _load(path, list(overrides))
        except ConfigError as exc:
            return f"{path} is no longer valid ({exc})"
        diff = _first_difference(then, now)
        if diff is not None:
            return f"{path}: {diff}"
    return None


def _first_difference(a, b, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if d is not None:
                return d
        return None
    return None if a == b else f"{prefix.rstrip('.')} was {a!r}, now {b!r}"


def _load(path: str | Path, overrides: list[str] | None) -> dict:
    params = read_yaml(path)
    if isinstance(params.get("run"), dict) and "seed" in params["run"]:
        raise ConfigError(f"{path}: run.seed: replaced by run.seeds, a list (e.g. `seeds: [{params['run']['seed']}]`); "
                          f"the data and the demo backbone have their own data.seed and backbone.seed")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        node = params
        *parents, leaf = key.split(".")
        for k in parents:
            if not isinstance(node.get(k), dict):
                raise ConfigError(f"--set {key}: {k} is not a section")
            node = node[k]
        node[leaf] = _parse_yaml(raw, f"--set {key}")
    return validate(params, source=str(path))


def select(params: Mapping[str, Any], keys: list[str]) -> dict:
    """The sub-tree of ``params`` named by dotted ``keys``: what a stage depends on."""
    out = {}
    for key in keys:
        node = params
        for k in key.split("."):
            node = node[k]
        out[key] = node
    return out
