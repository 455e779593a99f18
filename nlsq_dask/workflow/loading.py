"""Configuration sources: ``nlsq.yaml``, ``NLSQ_*`` environment, and their merge.

:func:`resolve_config` combines the sources with this precedence (highest
first)::

    explicit arguments  (fit() keywords, then a config object's non-default fields)
    environment         (NLSQ_WORKFLOW_GOAL, NLSQ_MEMORY_LIMIT_GB, NLSQ_CHECKPOINT_DIR,
                         NLSQ_ENABLE_CHECKPOINTING; and NLSQ_COMPILATION_CACHE)
    nlsq.yaml           (explicit path, else ./nlsq.yaml if present)
    preset              (the ``preset`` argument, else NLSQ_DEFAULT_WORKFLOW, else the
                         yaml's workflow.preset or default_workflow; a preset name or a
                         workflow of the yaml's ``workflows:`` section)
    defaults            (WorkflowConfig())

The yaml is read in the spec's layout (sections ``workflow``, ``tolerances``,
``cluster``) and in NLSQ's (workflow keys and ``default_workflow`` at the top
level, named workflows under ``workflows:``), or a mix of the two.
The ``cluster`` mapping is merged key by key across the layers rather than
replaced. Reading and checking the YAML file is :mod:`~nlsq_dask.workflow.yaml_file`'s.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

from .config import _PRESET_KEY, WorkflowConfig
from .enums import OptimizationGoal, parse_enum
from .presets import preset_overrides
from .yaml_file import (DEFAULT_WORKFLOW_KEY, DEFAULT_YAML_NAME, WORKFLOW_ENTRY_KEYS,
                        WORKFLOW_KEYS, WORKFLOWS_SECTION, YAML_ALIASES, YAML_SECTIONS,
                        load_yaml_config, read_yaml, validate_mapping, validate_yaml_doc)

__all__ = [
    "load_yaml_config",
    "yaml_to_overrides",
    "get_env_overrides",
    "resolve_config",
    "load_config_with_overrides",
    "get_custom_workflow",
    "validate_custom_workflow",
    "DEFAULT_YAML_NAME",
    "YAML_SECTIONS",
]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")






















def _field_overrides(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """WorkflowConfig fields of validated workflow keys (``preset`` left out, aliases mapped)."""
    return {YAML_ALIASES.get(k, k): v for k, v in mapping.items()
            if k != "preset" and k in WORKFLOW_ENTRY_KEYS}


def yaml_to_overrides(doc: Mapping[str, Any]) -> dict[str, Any]:
    """WorkflowConfig field overrides from a validated yaml document.

    Parameters
    ----------
    doc : mapping
        A document as :func:`load_yaml_config` returns.

    Returns
    -------
    dict
        The ``workflow`` section's and the top-level workflow keys, with
        ``enable_checkpointing`` mapped to ``enable_checkpoints``; the
        ``tolerances`` keys; the ``cluster`` section as the ``cluster`` field.
        The preset (``workflow.preset``, ``default_workflow``) and the
        ``workflows`` section are left out (see :func:`resolve_config`).
    """
    doc = validate_yaml_doc(dict(doc)) if doc else {}
    flat = {k: v for k, v in doc.items() if k in WORKFLOW_KEYS}
    out = _field_overrides({**doc.get("workflow", {}), **flat})
    out.update(doc.get("tolerances", {}))
    if doc.get("cluster"):
        out["cluster"] = dict(doc["cluster"])
    return out


def _yaml_preset(doc: Mapping[str, Any]) -> tuple[str | None, str]:
    """The yaml's preset name and the key that gave it."""
    if doc.get(DEFAULT_WORKFLOW_KEY) is not None:
        return doc[DEFAULT_WORKFLOW_KEY], DEFAULT_WORKFLOW_KEY
    return doc.get("workflow", {}).get("preset", doc.get("preset")), "preset"


def _preset_layer(name: Any, doc: Mapping[str, Any], argname: str) -> dict[str, Any]:
    """Overrides of preset or yaml workflow ``name`` (``argname`` gave it, for messages)."""
    workflows = doc.get(WORKFLOWS_SECTION, {})
    if isinstance(name, str):
        match = name if name in workflows else next(
            (w for w in workflows if w.lower() == name.strip().lower()), None)
        if match is not None:
            entry = workflows[match]
            layer = _preset_layer(entry["preset"], {}, f"{WORKFLOWS_SECTION}.{match}.preset") \
                if entry.get("preset") is not None else {}
            _merge(layer, _field_overrides(entry))
            return layer
    try:
        return preset_overrides(name)
    except ValueError as exc:
        msg = str(exc)
        if argname != "preset" and msg.startswith("preset="):
            msg = argname + msg[len("preset"):]
        if workflows:
            msg += (f"; or a workflow of the yaml's {WORKFLOWS_SECTION!r} section: "
                    f"{', '.join(map(repr, workflows))}")
        raise ValueError(msg) from None


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
        Some of ``goal`` (the goal's name, ``'QUALITY'``, as NLSQ's), ``memory_limit_gb``, ``checkpoint_dir``,
        ``enable_checkpoints``, ``compilation_cache`` (``NLSQ_COMPILATION_CACHE``:
        a boolean, or a directory) and, as in NLSQ, ``default_workflow``
        (``NLSQ_DEFAULT_WORKFLOW`` lowercased: the preset, or yaml workflow,
        :func:`resolve_config` starts from when no ``preset`` is given).

    Warns
    -----
    UserWarning
        For an ``NLSQ_WORKFLOW_GOAL`` that names no goal (it is then ignored, as in NLSQ).

    Raises
    ------
    ValueError
        If another variable has an invalid value; the message names the variable.
    """
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    goal = env.get("NLSQ_WORKFLOW_GOAL", "").strip()
    if goal:
        try:   # NLSQ's form: the goal's name; a bad value warns and is ignored, as NLSQ's
            out["goal"] = parse_enum(OptimizationGoal, goal, "NLSQ_WORKFLOW_GOAL").name
        except ValueError as exc:
            warnings.warn(f"{exc}; ignoring it", UserWarning, stacklevel=2)
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
    workflow = env.get("NLSQ_DEFAULT_WORKFLOW", "").strip()
    if workflow:
        out["default_workflow"] = workflow.lower()
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
    ``preset`` argument, else ``NLSQ_DEFAULT_WORKFLOW``, else the yaml's
    ``workflow.preset`` or ``default_workflow``) > defaults. A preset name that
    is a workflow of the yaml's ``workflows:`` section takes that workflow's
    settings (on top of its own ``preset``, if it names one).
    The ``cluster`` mapping is merged key by key.

    Parameters
    ----------
    preset : str, optional
        Preset name (see ``WORKFLOW_PRESETS``) or the name of a workflow of
        the yaml's ``workflows:`` section.
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
    doc = read_yaml(yaml_path, "yaml_path")
    env = get_env_overrides(environ)
    env_workflow = env.pop("default_workflow", None)
    if preset is not None:
        chosen, argname = preset, "preset"
    elif env_workflow is not None:
        chosen, argname = env_workflow, "NLSQ_DEFAULT_WORKFLOW"
    else:
        chosen, argname = _yaml_preset(doc)
    merged: dict[str, Any] = {}
    if chosen is not None:
        _merge(merged, _preset_layer(chosen, doc, argname))
    _merge(merged, yaml_to_overrides(doc))
    _merge(merged, env)
    if config is not None:
        _merge(merged, config.differences())
    if overrides:
        explicit = {k: v for k, v in overrides.items() if v is not None}
        WorkflowConfig.check_keys(explicit, where="override")
        _merge(merged, explicit)
    return WorkflowConfig.from_dict(merged)


def load_config_with_overrides(config_path: str | os.PathLike | None = None,
                               environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The yaml document with the environment's overrides on top (NLSQ's merge).

    Parameters
    ----------
    config_path : str or path_like, optional
        YAML file (see :func:`load_yaml_config`).
    environ : mapping, optional
        Environment (default ``os.environ``).

    Returns
    -------
    dict
        :func:`load_yaml_config`'s document updated with
        :func:`get_env_overrides`' keys. :func:`resolve_config` is what builds
        a validated WorkflowConfig from all sources.
    """
    config = dict(load_yaml_config(config_path) or {})
    config.update(get_env_overrides(environ))
    return config


def get_custom_workflow(workflow_name: str,
                        config_path: str | os.PathLike | None = None) -> WorkflowConfig | None:
    """The workflow ``workflow_name`` of the yaml's ``workflows:`` section.

    Parameters
    ----------
    workflow_name : str
        Name under ``workflows:``.
    config_path : str or path_like, optional
        YAML file (see :func:`load_yaml_config`).

    Returns
    -------
    WorkflowConfig or None
        The workflow's configuration, its ``preset`` ``"custom:<name>"`` (as
        NLSQ's); None if the yaml has no such workflow, or (with a
        ``UserWarning``, as NLSQ) if its values do not make a valid configuration.
    """
    entry = (load_yaml_config(config_path) or {}).get(WORKFLOWS_SECTION, {}).get(workflow_name)
    if entry is None:
        return None
    try:
        layer = _preset_layer(workflow_name, {WORKFLOWS_SECTION: {workflow_name: entry}},
                              "workflow_name")
        return WorkflowConfig.from_dict({**layer, _PRESET_KEY: f"custom:{workflow_name}"})
    except (ValueError, TypeError) as exc:
        warnings.warn(f"Invalid custom workflow {workflow_name!r}: {exc}. Ignoring.",
                      UserWarning, stacklevel=2)
        return None


def validate_custom_workflow(workflow_def: Mapping[str, Any]) -> tuple[bool, str | None]:
    """Whether ``workflow_def`` (one workflow of ``workflows:``) is a valid configuration.

    Parameters
    ----------
    workflow_def : mapping
        Workflow keys to values, as under a name of ``workflows:``.

    Returns
    -------
    tuple of (bool, str or None)
        ``(True, None)`` if valid, else ``(False, message)``.
    """
    try:
        entry = validate_mapping("workflow_def", workflow_def, WORKFLOW_ENTRY_KEYS, "the argument",
                                  "workflow_def")
        layer = _preset_layer("workflow_def", {WORKFLOWS_SECTION: {"workflow_def": entry}},
                              "workflow_def")
        WorkflowConfig.from_dict(layer)
    except (ValueError, TypeError) as exc:
        return False, str(exc)
    return True, None
