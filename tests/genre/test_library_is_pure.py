"""`genre/` is a pure library: no pipeline framework may be imported inside it."""
from __future__ import annotations

import ast
from pathlib import Path

import genre

FORBIDDEN = {"prefect", "mlflow", "great_expectations", "evidently"}


def test_genre_imports_no_pipeline_framework():
    offenders = []
    for path in Path(genre.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
