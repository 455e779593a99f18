"""Configuration files cannot explode or crash the command line (issue 14, items 5-6).

YAML aliases are refused (nested aliases expand exponentially: a few hundred bytes can
become millions of values); a file that does not parse is a ``ValueError`` naming it, and
``nlsq-dask info`` / ``nlsq-dask fit`` turn either into one line and status 2.
"""

from __future__ import annotations

import pytest

import nlsq_dask
from nlsq_dask import cli
from nlsq_dask.workflow import load_yaml_config

BOMB = """\
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
workflow:
  goal: fast
  checkpoint_dir: *e
"""

BROKEN = "workflow:\n  goal: [fast\n"


@pytest.mark.parametrize("text, match", [(BOMB, "aliases .* are not allowed"),
                                         (BROKEN, "cannot parse")])
def test_bad_yaml_is_a_value_error_naming_the_file(tmp_path, text, match):
    path = tmp_path / "nlsq.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_yaml_config(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=match):
        nlsq_dask.fit(lambda x, a: a * x, [1.0, 2.0], [2.0, 4.0], p0=[1.0], yaml_path=path)


@pytest.mark.parametrize("text", [BOMB, BROKEN])
def test_cli_info_with_a_bad_local_nlsq_yaml_is_one_line(tmp_path, monkeypatch, capsys, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nlsq.yaml").write_text(text)
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlsq-dask: error:") and "Traceback" not in err


def test_cli_fit_with_aliases_in_the_job_file_is_one_line(tmp_path, capsys):
    (tmp_path / "job.yaml").write_text(BOMB.replace("workflow:\n  goal: fast\n  checkpoint_dir: *e\n",
                                                    "model: exponential\n"))
    assert cli.main(["fit", str(tmp_path / "job.yaml")]) == 2
    assert "aliases" in capsys.readouterr().err


def test_anchors_without_aliases_still_load(tmp_path):
    path = tmp_path / "nlsq.yaml"
    path.write_text("workflow:\n  goal: &g fast\n")
    assert load_yaml_config(path)["workflow"]["goal"] == "fast"
