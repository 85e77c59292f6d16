"""The floor plan holds: every module imports only from its own layer or the layers below it
(docs/architecture.md draws them), and only the shared floor lives at the top level."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ttscale

PACKAGE = Path(ttscale.__file__).parent

# bottom to top; a module may import its own layer and every layer listed before it
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "registry", "steps", "thoughts", "stats", "settings", "compute", "grading",
     "records", "http_client", "hf_backend", "prompts", "datasets"),
    ("engines",),
    ("rewards",),
    ("search",),
    ("planner",),
    ("run",),
    ("prm_training", "report", "serve"),
    ("cli",),
)
FLOOR = LAYERS[0]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}
# the package's own __init__ re-exports the public API from above; nothing imports it for that
EXEMPT = {"__init__"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _room(path: Path) -> str:
    """The top-level name a module lives under: its folder, or itself at the top level."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_rooms(path: Path) -> set[tuple[str, int]]:
    """(room, line) of every ttscale import in the module, at any depth (lazy ones too)."""
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "ttscale":
                names = [f"ttscale.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ttscale" and len(parts) > 1:
                rooms.add((parts[1], node.lineno))
    return rooms


def test_every_room_has_a_layer():
    rooms = {_room(p) for p in _modules()} - EXEMPT
    assert rooms - set(LEVEL) == set(), "give each new module or folder a layer here"


def test_only_the_shared_floor_lives_at_the_top_level():
    top = {p.stem for p in PACKAGE.glob("*.py")} - EXEMPT
    assert top <= set(FLOOR), f"move {sorted(top - set(FLOOR))} into the folder of its layer"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_downward(path: Path):
    room = _room(path)
    if room in EXEMPT:
        return
    upward = [f"line {line}: ttscale.{target} (layer {LEVEL.get(target)}) from {room} "
              f"(layer {LEVEL[room]})"
              for target, line in sorted(_imported_rooms(path))
              if target != "__version__" and LEVEL.get(target, 99) > LEVEL[room]]
    assert not upward, "imports from a layer above:\n" + "\n".join(upward)


def test_the_checker_sees_lazy_and_package_imports(tmp_path):
    source = ("from ttscale import records\n"
              "def f():\n    from ttscale.cli.main import app\n    import ttscale.run.runner\n")
    module = tmp_path / "m.py"
    module.write_text(source)
    assert _imported_rooms(module) == {("records", 1), ("cli", 3), ("run", 4)}


def test_the_map_names_every_folder_and_every_floor_module():
    text = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    floor = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py"}
    missing = sorted(name for name in folders | floor
                     if f"`{name}`" not in text and f"`{name}/`" not in text)
    assert not missing, f"docs/architecture.md does not name {missing}"
