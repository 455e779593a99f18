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
replaced. The YAML file is read with a ``yaml.SafeLoader`` that also refuses aliases.
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import yaml

from .config import _PRESET_KEY, CLUSTER_KEYS, WorkflowConfig
from .enums import OptimizationGoal, parse_enum
from .presets import preset_overrides

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

DEFAULT_YAML_NAME = "nlsq.yaml"
YAML_SECTIONS = ("workflow", "tolerances", "cluster")
#: NLSQ's layout: named workflows, and the preset or workflow to use by default
WORKFLOWS_SECTION = "workflows"
DEFAULT_WORKFLOW_KEY = "default_workflow"
_TOLERANCE_KEYS = ("ftol", "xtol", "gtol")
#: yaml spelling -> WorkflowConfig field
_ALIASES = {"enable_checkpointing": "enable_checkpoints"}
_WORKFLOW_KEYS = tuple(
    sorted(
        (set(WorkflowConfig.field_names()) - {"cluster"}) | {"preset"} | set(_ALIASES)
    )
)
#: keys of one workflow of the ``workflows:`` section
_ENTRY_KEYS = tuple(sorted(set(_WORKFLOW_KEYS) | {"cluster"}))
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
            name = f"{where}.{key}" if where else key
            raise ValueError(f"{name} must be a number; got {value!r}")
        value = float(text)
    if key in _INT_FIELDS and isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


def _did_you_mean(word, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_yaml_config(config_path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """Read and validate an ``nlsq.yaml`` document.

    Parameters
    ----------
    config_path : str or path_like, optional
        File to read; default ``./nlsq.yaml``.

    Returns
    -------
    dict or None
        None if the file does not exist (as NLSQ's); else the document in its own layout, validated, numeric strings converted
        to numbers: the spec's sections (``{section: {key: value}}`` among
        ``workflow``, ``tolerances`` and ``cluster``) and NLSQ's top-level keys
        (workflow keys such as ``memory_limit_gb``, ``default_workflow``, and
        ``workflows``: ``{name: {key: value}}``).

    Raises
    ------
    ValueError
        On an unknown section or key (naming it and listing the valid ones),
        a non-mapping document/section, or a key given twice (at the top level
        and in a section).
    """
    path = Path.cwd() / DEFAULT_YAML_NAME if config_path is None else Path(config_path)
    return _load_yaml(path, "config_path") if path.is_file() else None


def _load_yaml(path: str | os.PathLike | None, argname: str) -> dict[str, Any]:
    """:func:`load_yaml_config`, naming ``argname`` when ``path`` is missing."""
    if path is None:
        candidate = Path.cwd() / DEFAULT_YAML_NAME
        if not candidate.is_file():
            return {}
        path = candidate
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{argname} {str(path)!r} does not exist")
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


def _validate_mapping(label: str, body: Any, valid: tuple[str, ...], source: str,
                      where: str) -> dict[str, Any]:
    """Check the keys of one mapping of the yaml; convert numeric strings.

    ``label`` names the mapping in messages (``"section 'workflow'"``),
    ``where`` prefixes a key in number errors (``"tolerances"``).
    """
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValueError(f"{label} in {source} must be a mapping; got {type(body).__name__}")
    clean = {}
    for key, value in body.items():
        if key not in valid:
            raise ValueError(
                f"unknown key {key!r} in {label} of {source}{_did_you_mean(key, valid)}; "
                f"valid keys are: {', '.join(valid)}"
            )
        clean[key] = _coerce_number(key, value, where)
    return clean


def _validate_workflows(body: Any, source: str) -> dict[str, dict]:
    """The ``workflows:`` section: ``{name: {workflow key: value}}``."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValueError(f"section {WORKFLOWS_SECTION!r} in {source} must be a mapping of "
                         f"workflow names to settings; got {type(body).__name__}")
    out = {}
    for name, entry in body.items():
        if not isinstance(name, str):
            raise ValueError(f"workflow names in section {WORKFLOWS_SECTION!r} of {source} "
                             f"must be strings; got {name!r}")
        out[name] = _validate_mapping(f"workflow {name!r} of section {WORKFLOWS_SECTION!r}",
                                      entry, _ENTRY_KEYS, source, f"{WORKFLOWS_SECTION}.{name}")
    return out


def validate_yaml_doc(doc: Any, source: str = "nlsq.yaml") -> dict[str, Any]:
    """Validate a parsed yaml document (see :func:`load_yaml_config`).

    Parameters
    ----------
    doc : any
        The parsed document.
    source : str
        Where it came from, for messages.

    Returns
    -------
    dict
        The document in its own layout, validated.

    Raises
    ------
    ValueError
        As :func:`load_yaml_config`.
    """
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValueError(f"{source} must contain a mapping of sections; got {type(doc).__name__}")
    valid_keys = {"workflow": _WORKFLOW_KEYS, "tolerances": _TOLERANCE_KEYS,
                  "cluster": CLUSTER_KEYS}
    out: dict[str, Any] = {}
    for key, body in doc.items():
        if key in YAML_SECTIONS:
            out[key] = _validate_mapping(f"section {key!r}", body, valid_keys[key], source, key)
        elif key == WORKFLOWS_SECTION:
            out[key] = _validate_workflows(body, source)
        elif key == DEFAULT_WORKFLOW_KEY:
            if not isinstance(body, str) or not body.strip():
                raise ValueError(f"{DEFAULT_WORKFLOW_KEY} in {source} must be the name of a "
                                 f"preset or of a workflow in {WORKFLOWS_SECTION!r}; got {body!r}")
            out[key] = body.strip()
        elif key in _WORKFLOW_KEYS:           # NLSQ's flat layout
            out[key] = _coerce_number(key, body, "")
        else:
            sections = YAML_SECTIONS + (WORKFLOWS_SECTION,)
            tops = sections + (DEFAULT_WORKFLOW_KEY,) + _WORKFLOW_KEYS
            raise ValueError(
                f"unknown section {key!r} in {source}{_did_you_mean(key, tops)}; "
                f"valid sections are: {', '.join(sections)}; NLSQ's flat layout also takes "
                f"{DEFAULT_WORKFLOW_KEY} and the workflow keys at the top level: "
                f"{', '.join(_WORKFLOW_KEYS)}"
            )
    _check_given_once(out, source)
    return out


def _check_given_once(doc: Mapping[str, Any], source: str) -> None:
    """A setting is given once: at the top level or in a section, and one preset name."""
    for section in ("workflow", "tolerances"):
        for key in doc.get(section, {}):
            if key in doc:
                raise ValueError(f"{key!r} is given twice in {source}: at the top level and "
                                 f"in section {section!r}; give it once")
    names = [where for where, given in (("workflow.preset", doc.get("workflow", {}).get("preset")),
                                        ("preset", doc.get("preset")),
                                        (DEFAULT_WORKFLOW_KEY, doc.get(DEFAULT_WORKFLOW_KEY)))
             if given is not None]
    if len(names) > 1:
        raise ValueError(f"{source} names its preset twice ({' and '.join(names)}); give one")


def _field_overrides(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """WorkflowConfig fields of validated workflow keys (``preset`` left out, aliases mapped)."""
    return {_ALIASES.get(k, k): v for k, v in mapping.items()
            if k != "preset" and k in _ENTRY_KEYS}


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
    flat = {k: v for k, v in doc.items() if k in _WORKFLOW_KEYS}
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
    doc = _load_yaml(yaml_path, "yaml_path")
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
        entry = _validate_mapping("workflow_def", workflow_def, _ENTRY_KEYS, "the argument",
                                  "workflow_def")
        layer = _preset_layer("workflow_def", {WORKFLOWS_SECTION: {"workflow_def": entry}},
                              "workflow_def")
        WorkflowConfig.from_dict(layer)
    except (ValueError, TypeError) as exc:
        return False, str(exc)
    return True, None
