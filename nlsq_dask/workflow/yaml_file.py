"""``nlsq.yaml``: reading it safely and checking its layout.

The spec's layout (sections ``workflow``, ``tolerances``, ``cluster``) and NLSQ's (workflow
keys and ``default_workflow`` at the top level, named workflows under ``workflows:``), or
a mix of the two, are read with a ``yaml.SafeLoader`` that also refuses aliases; unknown
keys, keys given twice and numbers written as strings are handled here.
:mod:`~nlsq_dask.workflow.loading` turns the checked document into configuration layers.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from .config import CLUSTER_KEYS, WorkflowConfig

DEFAULT_YAML_NAME = "nlsq.yaml"
YAML_SECTIONS = ("workflow", "tolerances", "cluster")
#: NLSQ's layout: named workflows, and the preset or workflow to use by default
WORKFLOWS_SECTION = "workflows"
DEFAULT_WORKFLOW_KEY = "default_workflow"
_TOLERANCE_KEYS = ("ftol", "xtol", "gtol")
#: yaml spelling -> WorkflowConfig field
YAML_ALIASES = {"enable_checkpointing": "enable_checkpoints"}
WORKFLOW_KEYS = tuple(
    sorted(
        (set(WorkflowConfig.field_names()) - {"cluster"}) | {"preset"} | set(YAML_ALIASES)
    )
)
#: keys of one workflow of the ``workflows:`` section
WORKFLOW_ENTRY_KEYS = tuple(sorted(set(WORKFLOW_KEYS) | {"cluster"}))
_FLOAT_FIELDS = {"ftol", "xtol", "gtol", "scale_factor", "memory_limit_gb", "f_scale"}
_INT_FIELDS = {"n_starts", "chunk_size", "checkpoint_frequency", "max_nfev",
               "split_every", "validation_passes",
               "nodes", "gpus_per_node", "cores_per_node", "processes_per_node",
               "n_workers", "threads_per_worker"}
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


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
    return read_yaml(path, "config_path") if path.is_file() else None


def read_yaml(path: str | os.PathLike | None, argname: str) -> dict[str, Any]:
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


def validate_mapping(label: str, body: Any, valid: tuple[str, ...], source: str,
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
        out[name] = validate_mapping(f"workflow {name!r} of section {WORKFLOWS_SECTION!r}",
                                     entry, WORKFLOW_ENTRY_KEYS, source,
                                     f"{WORKFLOWS_SECTION}.{name}")
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
    valid_keys = {"workflow": WORKFLOW_KEYS, "tolerances": _TOLERANCE_KEYS,
                  "cluster": CLUSTER_KEYS}
    out: dict[str, Any] = {}
    for key, body in doc.items():
        if key in YAML_SECTIONS:
            out[key] = validate_mapping(f"section {key!r}", body, valid_keys[key], source, key)
        elif key == WORKFLOWS_SECTION:
            out[key] = _validate_workflows(body, source)
        elif key == DEFAULT_WORKFLOW_KEY:
            if not isinstance(body, str) or not body.strip():
                raise ValueError(f"{DEFAULT_WORKFLOW_KEY} in {source} must be the name of a "
                                 f"preset or of a workflow in {WORKFLOWS_SECTION!r}; got {body!r}")
            out[key] = body.strip()
        elif key in WORKFLOW_KEYS:           # NLSQ's flat layout
            out[key] = _coerce_number(key, body, "")
        else:
            sections = YAML_SECTIONS + (WORKFLOWS_SECTION,)
            tops = sections + (DEFAULT_WORKFLOW_KEY,) + WORKFLOW_KEYS
            raise ValueError(
                f"unknown section {key!r} in {source}{_did_you_mean(key, tops)}; "
                f"valid sections are: {', '.join(sections)}; NLSQ's flat layout also takes "
                f"{DEFAULT_WORKFLOW_KEY} and the workflow keys at the top level: "
                f"{', '.join(WORKFLOW_KEYS)}"
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
