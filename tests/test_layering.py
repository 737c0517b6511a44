"""The package layering: `engine` (the model, training, evaluation on arrays) never imports `realtime`
(the tracker, sources, renderer, app); realtime builds on engine, not the other way round."""
from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"


def realtime_imports(path: Path, root: Path = ENGINE.parent) -> list[str]:
    """`file:line module` for every import of the realtime package in `path`, at any depth
    (module level, inside functions, under `if TYPE_CHECKING`, try/except)."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []  # relative imports stay inside engine
        else:
            continue
        hits += [f"{path.relative_to(root)}:{node.lineno} {n}" for n in names
                 if n == "realtime" or n.startswith("realtime.")]
    return hits


def test_engine_never_imports_realtime():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 20  # the walk found the package
    hits = [h for f in files for h in realtime_imports(f)]
    assert not hits, "engine imports realtime:\n" + "\n".join(hits)


def test_the_check_sees_function_level_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\n\ndef f():\n    from realtime.tracker import track_frames\n"
                     "    import realtime.sources as s\n    from . import cli\n    import realtime_other\n")
    assert realtime_imports(probe, tmp_path) == ["probe.py:4 realtime.tracker", "probe.py:5 realtime.sources"]
