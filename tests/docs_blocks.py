"""Run the code blocks of a Markdown page as a reader would: in order, in a fresh directory.

The rules (a page's author follows them; ``tests/test_docs_blocks.py`` applies them):

* ``python`` blocks run in one namespace per page, in order, as ``__main__`` (so a block
  guarded by ``if __name__ == "__main__":`` runs). A block preceded by
  ``<!-- docs: script -->`` runs on its own as ``python block.py`` in a new process
  instead — it must be complete by itself (a script that starts a ``LocalCluster``).
* ``bash`` blocks run line by line with bash; ``console`` blocks run their ``$ `` lines
  (the other lines are output). ``pip install`` commands are not run: the package is
  installed already (CI installs it in a fresh virtualenv from the README's commands).
* ``yaml`` blocks preceded by ``<!-- docs: file NAME -->`` are written to ``NAME``; other
  ``yaml`` blocks must parse (``yaml.safe_load``).
* ``<!-- docs: skip REASON -->`` before a block skips it (the reason is required);
  ``text`` and ``pycon``-less output blocks are never run.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

FENCE = re.compile(r"(?:<!--\s*docs:\s*(?P<marker>[^>]*?)\s*-->\s*\n)?"
                   r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)
RUN = ("python", "bash", "console", "yaml")


@dataclass
class Block:
    page: str
    line: int
    lang: str
    body: str
    marker: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a page, with the marker comment just above it."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        marker = (m.group("marker") or "").strip()
        if marker and not re.match(r"(skip \S.*|script|file \S+)$", marker):
            raise ValueError(f"{path.name}:{text[:m.start()].count(chr(10)) + 1}: unknown "
                             f"docs marker {marker!r}")
        out.append(Block(path.name, text[:m.start("lang")].count("\n") + 1, m.group("lang"),
                         m.group("body"), marker))
    return out


def commands(block: Block) -> list[str]:
    """The shell commands of a ``bash``/``console`` block, ``pip install`` left out."""
    lines = block.body.splitlines()
    if block.lang == "console":
        lines = [ln[2:] for ln in lines if ln.startswith("$ ")]
    out = []
    for line in lines:
        line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        parts = [p.strip() for p in line.split("&&")]
        parts = [p for p in parts if p and not p.startswith("pip install")]
        if parts:
            out.append(" && ".join(parts))
    return out


def run_page(path: Path, cwd: Path, env: dict, timeout: float = 300) -> tuple[dict, list]:
    """Run a page's blocks in ``cwd``: ``(namespace of its python blocks, what ran)``,
    where what ran is a list of ``(block, outcome)`` with outcome ``'ran'`` or the skip
    reason. A failing block raises, naming the page and line."""
    namespace: dict = {"__name__": "__main__"}
    ran = []
    for block in blocks(path):
        if block.lang not in RUN:
            continue
        if block.marker.startswith("skip"):
            ran.append((block, block.marker))
            continue
        try:
            _run(block, namespace, cwd, env, timeout)
        except Exception as exc:
            raise AssertionError(f"{block.where} ({block.lang}) failed: {exc}\n"
                                 f"--- block ---\n{block.body}") from exc
        ran.append((block, "ran"))
    return namespace, ran


def _run(block: Block, namespace: dict, cwd: Path, env: dict, timeout: float) -> None:
    if block.lang == "yaml":
        if block.marker.startswith("file "):
            (cwd / block.marker.split(None, 1)[1]).write_text(block.body, encoding="utf-8")
        else:
            yaml.safe_load(block.body)
        return
    if block.lang == "python" and block.marker != "script":
        exec(compile(block.body, f"<{block.where}>", "exec"), namespace)
        return
    if block.lang == "python":
        script = cwd / f"_docs_block_{block.line}.py"
        script.write_text(block.body, encoding="utf-8")
        cmds = [f"{shlex.quote(sys.executable)} {script.name}"]
    else:
        cmds = commands(block)
    for cmd in cmds:
        proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"`{cmd}` exited {proc.returncode}\n{proc.stdout[-3000:]}\n"
                               f"{proc.stderr[-3000:]}")


def main(argv=None) -> int:
    """``python tests/docs_blocks.py [PAGE ...]``: run the pages in fresh temporary
    directories and print a line per block (ran, or skipped and why)."""
    import os
    import tempfile

    root = Path(__file__).resolve().parents[1]
    pages = [Path(p) for p in (argv or [])] or docs_pages(root)
    env = reader_environment()
    for page in pages:
        with tempfile.TemporaryDirectory() as tmp:
            here = os.getcwd()
            os.chdir(tmp)
            try:
                _, ran = run_page(page.resolve(), Path(tmp), env)
            finally:
                os.chdir(here)
        for block, outcome in ran:
            print(f"{block.where:28s} {block.lang:8s} {outcome}")
    return 0


def docs_pages(root: Path) -> list[Path]:
    """README.md and every page of docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def reader_environment() -> dict:
    """A reader's environment: this interpreter's scripts first on PATH, no NLSQ_*
    settings or scheduler address of the developer's, a non-interactive plot backend."""
    import os

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NLSQ_") and k not in ("DASK_SCHEDULER_ADDRESS",)}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    return env


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
