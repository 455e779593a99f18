"""The workflow layer imports no heavy dependency and exports the spec's names."""

import subprocess
import sys
from pathlib import Path


import nlsq_dask.workflow as workflow

HEAVY = ("jax", "dask", "distributed", "xarray", "zarr")
PKG_DIR = Path(workflow.__file__).resolve().parents[1]


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_workflow_layer_imports_nothing_heavy():
    # Import the layer under a bare parent package so the check is about this layer only,
    # whatever the top-level nlsq_dask/__init__.py imports.
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('nlsq_dask'); pkg.__path__ = [{str(PKG_DIR)!r}]\n"
        "sys.modules['nlsq_dask'] = pkg\n"
        "import nlsq_dask.workflow as w\n"
        "w.auto_select_workflow(10**6, 3, resources=w.ResourceSnapshot(host_memory_gb=8.0))\n"
        "w.ClusterDetector(environ={}, use_nvidia_smi=False).detect()\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr


def test_import_nlsq_dask_workflow_plain():
    # the literal check (the package itself imports xarray for the accessor,
    # which imports neither JAX nor dask)
    proc = _run("import nlsq_dask.workflow, sys; "
                "assert 'jax' not in sys.modules and 'dask' not in sys.modules")
    assert proc.returncode == 0, proc.stderr


def test_public_names():
    expected = {
        "WorkflowTier", "OptimizationGoal", "DatasetSizeTier", "MemoryTier", "WorkflowConfig",
        "WORKFLOW_PRESETS", "WorkflowSelector", "Selection", "DatasetProfile",
        "ResourceSnapshot", "auto_select_workflow", "get_total_available_memory_gb",
        "get_memory_tier", "ClusterInfo", "ClusterDetector", "load_yaml_config",
        "get_env_overrides", "resolve_config", "adaptive_tolerance",
    }
    assert expected <= set(workflow.__all__)
    for name in workflow.__all__:
        assert hasattr(workflow, name), name
