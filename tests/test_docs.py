"""The documented Python is the tested Python: the README's ```python blocks and the example in
fer_search.api's docstring each run, exactly as written, in a fresh process in an empty folder."""

from __future__ import annotations

import re
import textwrap

import pytest
from helpers import REPO, run_python

import fer_search.api


def readme_blocks() -> list[str]:
    """Every ```python fenced block of the README, in order."""
    text = (REPO / "README.md").read_text()
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def indented_blocks(doc: str) -> list[str]:
    """The examples of a docstring: each run of lines indented by four spaces, dedented."""
    blocks, current = [], []
    for line in [*doc.splitlines(), ""]:
        if line.startswith("    "):
            current.append(line)
        elif current:
            blocks.append(textwrap.dedent("\n".join(current)) + "\n")
            current = []
    return blocks


SOURCES = {
    "README.md": readme_blocks,
    "fer_search.api": lambda: indented_blocks(fer_search.api.__doc__ or ""),
}


@pytest.mark.parametrize("source", SOURCES)
def test_every_documented_example_runs_as_written(source, tmp_path):
    blocks = SOURCES[source]()
    assert blocks, f"no examples found in {source}"  # a renamed fence must not skip them silently
    for i, code in enumerate(blocks, 1):
        cwd = tmp_path / f"example-{i}"  # each in a fresh process and an empty folder
        cwd.mkdir()
        done = run_python("-c", code, cwd=cwd)
        assert done.returncode == 0, f"{source} example {i}:\n{code}\n{done.stderr[-4000:]}"
