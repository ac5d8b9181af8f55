"""The layers hold: `lint-imports` passes on the real tree and fails, naming the contract, when one import
goes the wrong way; each package's face names what it exports; `import adapter_core` stays light."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = "from importlinter.cli import lint_imports; raise SystemExit(lint_imports(no_cache=True, no_logo=True))"
FACES = ("adapter_core", "adapter_core.engine", "adapter_core.serve", "adapter_core.share")


def lint(root: Path) -> subprocess.CompletedProcess:
    # lint-imports reads pyproject.toml in its working directory and finds the packages there.
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def tree(tmp_path):
    for package in ("adapter_core", "studio"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "module, line, contract",
    [
        ("adapter_core/config.py", "from adapter_core.engine import train", "adapter_core's layers"),
        ("adapter_core/share/packs.py", "import adapter_core.serve", "adapter_core's layers"),
        ("adapter_core/serve/pool.py", "from adapter_core.engine import load_data", "it never imports the engine"),
        ("adapter_core/schema.py", "from adapter_core import inject", "Reading adapter files needs no model"),
        ("adapter_core/paths.py", "import studio.text", "The studio sits on top of adapter_core"),
        ("studio/text.py", "from adapter_core.engine.runs import Run", "through its faces"),
        ("studio/hardware.py", "from studio import service", "No import circles"),
    ],
)
def test_an_import_the_wrong_way_breaks_its_contract(tree, module, line, contract):
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint(tree)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


def test_a_new_module_must_take_its_place_in_the_layers(tree):
    (tree / "adapter_core" / "stray.py").write_text("VALUE = 1\n")
    result = lint(tree)
    assert result.returncode != 0 and "adapter_core.stray" in result.stdout


def _bound_names(module: Path) -> set[str]:
    """The names a module binds at its top level: definitions, assignments and imports."""
    names = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_every_face_declares_its_api_and_the_names_exist():
    import adapter_core
    import adapter_core.engine as engine
    import adapter_core.serve as serve
    import adapter_core.share as share

    for face in (adapter_core, serve, share):
        assert face.__all__ and all(hasattr(face, name) for name in face.__all__), face.__name__
    # The engine's face loads each name on first use; check where each lives without importing it all.
    folder = ROOT / "adapter_core" / "engine"
    for module, names in engine._FACE.items():
        missing = set(names) - _bound_names(folder / f"{module}.py")
        assert not missing, f"adapter_core.engine.{module} has no {missing}"
        # A submodule is bound on its package when it loads, over a face name spelled like it.
        assert not set(names) & {p.stem for p in folder.glob("*.py")}
    assert sorted(engine.__all__) == sorted(n for names in engine._FACE.values() for n in names)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        engine.nothing  # noqa: B018


def test_importing_adapter_core_imports_none_of_its_packages():
    graph = grimp.build_graph("adapter_core", cache_dir=None)
    heavy = [m for m in graph.modules if m.split(".")[1:2] in (["engine"], ["serve"], ["share"], ["cli"])]
    reached = [m for m in heavy if graph.find_shortest_chain(importer="adapter_core", imported=m)]
    assert not reached


def test_placements_names_the_placements_and_architectures_the_table():
    from adapter_core import ARCHITECTURES, PLACEMENTS, AdapterConfig

    assert PLACEMENTS == ("houlsby", "pfeiffer", "parallel")
    assert all(AdapterConfig(placement=p).placement == p for p in PLACEMENTS)
    assert ARCHITECTURES["bert"].family == "encoder" and "llama" in ARCHITECTURES
