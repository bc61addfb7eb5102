"""The documents' measured numbers are rendered from the results files (docs/render.py)."""
from __future__ import annotations

import json
import shutil

import pytest

from docs import render


def test_every_rendered_block_agrees_with_its_results_file():
    assert render.render_all(check=True) == [], "run python -m docs.render after a benchmark"


def test_every_renderer_is_used_and_every_results_file_is_rendered():
    text = "".join(open(path, encoding="utf-8").read() for path in render.documents())
    used = {match.group("name") for match in render.BLOCK.finditer(text)}
    assert used == set(render.RENDERERS)
    assert {file for file, _ in render.RENDERERS.values()} == set(render.os.listdir(render.RESULTS))


def test_a_changed_result_makes_its_block_stale_and_rendering_mends_it(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    shutil.copytree(render.RESULTS, results)
    monkeypatch.setattr(render, "RESULTS", str(results))
    document = tmp_path / "README.md"
    shutil.copy(render.documents()[0], document)
    assert render.render_all(check=True, files=[str(document)]) == []
    data = json.loads((results / "ood.json").read_text())
    data["demo"]["saved_threshold"]["in_accepted"] = 0.5
    (results / "ood.json").write_text(json.dumps(data))
    before = document.read_text()
    assert len(render.render_all(check=True, files=[str(document)])) == 1
    assert document.read_text() == before  # --check changes nothing
    render.render_all(check=False, files=[str(document)])
    assert "test split: 50.0%" in document.read_text()
    assert render.render_all(check=True, files=[str(document)]) == []


def test_an_unknown_block_is_named(tmp_path):
    document = tmp_path / "page.md"
    document.write_text("<!-- rendered: no_such_table -->\nold\n<!-- /rendered -->\n")
    with pytest.raises(SystemExit, match="unknown rendered block 'no_such_table'"):
        render.render_all(check=True, files=[str(document)])


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    import re

    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_every_relative_link_and_anchor_of_the_documents_exists():
    import os
    import re

    broken = []
    for path in render.documents():
        text = open(path, encoding="utf-8").read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, fragment = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(resolved):
                broken.append(f"{os.path.relpath(path, render.ROOT)}: {target} (no such file)")
                continue
            if fragment and resolved.endswith(".md"):
                headings = re.findall(r"^#+ (.+)$", open(resolved, encoding="utf-8").read(), re.M)
                if fragment not in {anchor(heading) for heading in headings}:
                    broken.append(f"{os.path.relpath(path, render.ROOT)}: {target} (no such heading)")
    assert not broken, broken
