"""Configuration sources: ``nlsq.yaml``, ``NLSQ_*`` environment, and their merge.

:func:`resolve_config` combines the sources with this precedence (highest
first)::

    explicit arguments  (fit() keywords, then a config object's non-default fields)
    environment         (NLSQ_WORKFLOW_GOAL, NLSQ_MEMORY_LIMIT_GB, NLSQ_CHECKPOINT_DIR,
                         NLSQ_ENABLE_CHECKPOINTING; and NLSQ_COMPILATION_CACHE)
    nlsq.yaml           (explicit path, else ./nlsq.yaml if present)
    preset              (the ``preset`` argument, else the yaml's workflow.preset)
    defaults            (WorkflowConfig())

The ``cluster`` mapping is merged key by key across the layers rather than
replaced. The YAML file is read with a ``yaml.SafeLoader`` that also refuses aliases.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from .config import CLUSTER_KEYS, WorkflowConfig
from .enums import OptimizationGoal, parse_enum
from .presets import preset_overrides

__all__ = [
    "load_yaml_config",
    "yaml_to_overrides",
    "get_env_overrides",
    "resolve_config",
    "DEFAULT_YAML_NAME",
    "YAML_SECTIONS",
]

DEFAULT_YAML_NAME = "nlsq.yaml"
YAML_SECTIONS = ("workflow", "tolerances", "cluster")
_TOLERANCE_KEYS = ("ftol", "xtol", "gtol")
#: yaml spelling -> WorkflowConfig field
_ALIASES = {"enable_checkpointing": "enable_checkpoints"}
_WORKFLOW_KEYS = tuple(
    sorted(
        (set(WorkflowConfig.field_names()) - {"cluster"}) | {"preset"} | set(_ALIASES)
    )
)
_FLOAT_FIELDS = {"ftol", "xtol", "gtol", "scale_factor", "memory_limit_gb", "f_scale"}
_INT_FIELDS = {"n_starts", "chunk_size", "checkpoint_frequency", "max_nfev",
               "split_every", "validation_passes",
               "nodes", "gpus_per_node", "cores_per_node", "processes_per_node",
               "n_workers", "threads_per_worker"}
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _coerce_number(key: str, value: Any, where: str) -> Any:
    """Convert numeric strings (PyYAML reads ``1e-10`` as a str) for numeric keys."""
    if isinstance(value, str) and (key in _FLOAT_FIELDS or key in _INT_FIELDS):
        text = value.strip().replace("_", "")
        if not _NUMBER_RE.match(text):
            raise ValueError(f"{where}.{key} must be a number; got {value!r}")
        value = float(text)
    if key in _INT_FIELDS and isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


def _did_you_mean(word, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_yaml_config(path: str | os.PathLike | None = None) -> dict[str, dict]:
    """Read and validate an ``nlsq.yaml`` document.

    Parameters
    ----------
    path : str or path_like, optional
        File to read. Without it, ``./nlsq.yaml`` is read if it exists,
        else ``{}`` is returned.

    Returns
    -------
    dict
        ``{section: {key: value}}`` with sections among ``workflow``,
        ``tolerances`` and ``cluster``; numeric strings converted to numbers.

    Raises
    ------
    FileNotFoundError
        If an explicit ``path`` does not exist.
    ValueError
        On an unknown section or key (naming it and listing the valid ones)
        or a non-mapping document/section.
    """
    if path is None:
        candidate = Path.cwd() / DEFAULT_YAML_NAME
        if not candidate.is_file():
            return {}
        path = candidate
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"yaml_path {str(path)!r} does not exist")
    return validate_yaml_doc(parse_yaml_file(path), source=str(path))


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``).

    An alias repeats a whole subtree, so nested aliases grow exponentially: a 443-byte
    file expanded to 10^6 values (a 35 MB checkpoint store), one more level would not
    finish. Configuration files have no need for them.
    """

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in configuration files "
                "(each repeats a whole subtree, so a few lines can expand to millions of "
                "values); write the values out", mark)
        return super().compose_node(parent, index)


def parse_yaml_file(path) -> Any:
    """The document in the YAML file ``path`` (safe loader, no aliases).

    Raises ``ValueError`` naming the file (and line) when it cannot be parsed.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        text = " ".join(str(exc).split())
        raise ValueError(f"cannot parse {path}: {text}") from None


def validate_yaml_doc(doc: Any, source: str = "nlsq.yaml") -> dict[str, dict]:
    """Validate a parsed yaml document (see :func:`load_yaml_config`)."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValueError(f"{source} must contain a mapping of sections; got {type(doc).__name__}")
    valid_keys = {"workflow": _WORKFLOW_KEYS, "tolerances": _TOLERANCE_KEYS,
                  "cluster": CLUSTER_KEYS}
    out: dict[str, dict] = {}
    for section, body in doc.items():
        if section not in YAML_SECTIONS:
            raise ValueError(
                f"unknown section {section!r} in {source}{_did_you_mean(section, YAML_SECTIONS)}; "
                f"valid sections are: {', '.join(YAML_SECTIONS)}"
            )
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ValueError(f"section {section!r} in {source} must be a mapping; "
                             f"got {type(body).__name__}")
        clean = {}
        for key, value in body.items():
            if key not in valid_keys[section]:
                raise ValueError(
                    f"unknown key {key!r} in section {section!r} of {source}"
                    f"{_did_you_mean(key, valid_keys[section])}; valid keys "
                    f"are: {', '.join(valid_keys[section])}"
                )
            clean[key] = _coerce_number(key, value, section)
        out[section] = clean
    return out


def yaml_to_overrides(doc: Mapping[str, Mapping]) -> dict[str, Any]:
    """WorkflowConfig field overrides from a validated yaml document.

    ``workflow.preset`` is not a field and is left out (see
    :func:`resolve_config`); ``enable_checkpointing`` maps to
    ``enable_checkpoints``; ``tolerances`` keys map to ``ftol/xtol/gtol``;
    the ``cluster`` section becomes the ``cluster`` field.
    """
    doc = validate_yaml_doc(dict(doc)) if doc else {}
    out: dict[str, Any] = {}
    for key, value in doc.get("workflow", {}).items():
        if key != "preset":
            out[_ALIASES.get(key, key)] = value
    out.update(doc.get("tolerances", {}))
    if doc.get("cluster"):
        out["cluster"] = dict(doc["cluster"])
    return out


def _parse_bool(name: str, value: str) -> bool:
    key = value.strip().lower()
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean; expected one of "
                     f"{', '.join(_TRUE + _FALSE)}")


def get_env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """WorkflowConfig overrides from ``NLSQ_*`` environment variables.

    Parameters
    ----------
    environ : mapping, optional
        Environment to read (default ``os.environ``). Empty values are ignored.

    Returns
    -------
    dict
        Some of ``goal``, ``memory_limit_gb``, ``checkpoint_dir``,
        ``enable_checkpoints`` and ``compilation_cache`` (``NLSQ_COMPILATION_CACHE``:
        a boolean, or a directory).

    Raises
    ------
    ValueError
        If a variable has an invalid value; the message names the variable.
    """
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    goal = env.get("NLSQ_WORKFLOW_GOAL", "").strip()
    if goal:
        out["goal"] = parse_enum(OptimizationGoal, goal, "NLSQ_WORKFLOW_GOAL")
    mem = env.get("NLSQ_MEMORY_LIMIT_GB", "").strip()
    if mem:
        try:
            val = float(mem)
        except ValueError:
            val = float("nan")
        if not (val > 0 and val != float("inf")):
            raise ValueError(f"NLSQ_MEMORY_LIMIT_GB={mem!r} must be a positive number of GB")
        out["memory_limit_gb"] = val
    cdir = env.get("NLSQ_CHECKPOINT_DIR", "").strip()
    if cdir:
        out["checkpoint_dir"] = cdir
    ckpt = env.get("NLSQ_ENABLE_CHECKPOINTING", "").strip()
    if ckpt:
        out["enable_checkpoints"] = _parse_bool("NLSQ_ENABLE_CHECKPOINTING", ckpt)
    cache = env.get("NLSQ_COMPILATION_CACHE", "").strip()
    if cache:
        lowered = cache.lower()
        out["compilation_cache"] = (_parse_bool("NLSQ_COMPILATION_CACHE", cache)
                                    if lowered in _TRUE + _FALSE else cache)
    return out


def _merge(base: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if key == "cluster" and isinstance(value, dict) and isinstance(base.get("cluster"), dict):
            base["cluster"] = {**base["cluster"], **value}
        else:
            base[key] = value


def resolve_config(
    *,
    preset: str | None = None,
    config: WorkflowConfig | None = None,
    overrides: Mapping[str, Any] | None = None,
    yaml_path: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> WorkflowConfig:
    """Merge all configuration sources into one validated WorkflowConfig.

    Precedence, highest first: ``overrides`` (non-None keyword values from
    ``fit()``) > fields of ``config`` that differ from ``WorkflowConfig()``
    defaults > environment (``NLSQ_*``) > ``nlsq.yaml`` > preset (the
    ``preset`` argument, else the yaml's ``workflow.preset``) > defaults.
    The ``cluster`` mapping is merged key by key.

    Parameters
    ----------
    preset : str, optional
        Preset name (see ``WORKFLOW_PRESETS``).
    config : WorkflowConfig, optional
        Explicit config object.
    overrides : mapping, optional
        Explicit field values; None values are ignored.
    yaml_path : str or path_like, optional
        YAML file; default ``./nlsq.yaml`` when present.
    environ : mapping, optional
        Environment (default ``os.environ``).

    Returns
    -------
    WorkflowConfig

    Raises
    ------
    TypeError
        If ``config`` is not a WorkflowConfig.
    ValueError
        On unknown keys/presets or invalid values in any source.
    """
    if config is not None and not isinstance(config, WorkflowConfig):
        raise TypeError(f"config must be a WorkflowConfig; got {type(config).__name__}")
    doc = load_yaml_config(yaml_path)
    yaml_preset = doc.get("workflow", {}).get("preset")
    chosen = preset if preset is not None else yaml_preset
    merged: dict[str, Any] = {}
    if chosen is not None:
        _merge(merged, preset_overrides(chosen))
    _merge(merged, yaml_to_overrides(doc))
    _merge(merged, get_env_overrides(environ))
    if config is not None:
        _merge(merged, config.differences())
    if overrides:
        explicit = {k: v for k, v in overrides.items() if v is not None}
        WorkflowConfig.check_keys(explicit, where="override")
        _merge(merged, explicit)
    return WorkflowConfig.from_dict(merged)
