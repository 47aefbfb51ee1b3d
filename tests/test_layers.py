"""The house's arrows point down: every import in the package (module level, lazy, under TYPE_CHECKING
alike) is walked, and an upward import between layers or an import cycle between modules fails.

    app, __main__, CLIs  ->  server (Wyoming) | http (HTTP)  ->  service  ->  voices  ->  engine  ->  core
    settings is read by all and imports only core; client (the Wyoming client) imports only core.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "wyoming_qwen3tts"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Layer -> the layers it may import. Modules directly in the package are their own layer (by file name);
# the top-level wiring and entry points may import anything.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "engine": {"core"},
    "diagnostics": {"core", "engine"},
    "voices": {"core", "engine"},
    "settings": {"core"},
    "service": {"core", "engine", "voices", "settings"},
    "server": {"core", "engine", "voices", "settings", "service"},
    "http": {"core", "engine", "voices", "settings", "service"},
    "client": {"core"},
    "platform_env": set(),
    "health_check": set(),
}
TOP = {"app", "__main__", "voices_cli", "synth_cli"}  # wiring and entry points: may import every layer


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of the package modules this file imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(PACKAGE):
                continue
            for alias in node.names:  # `from . import x` may name a submodule
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        graph[module] = {m for m in _imports(path, module) if m != module}
    return graph


def test_the_walk_sees_the_layers():
    graph = _graph()
    assert {_layer(m) for m in graph} >= set(ALLOWED) | TOP
    assert "wyoming_qwen3tts.engine.engine" in graph["wyoming_qwen3tts.engine"]
    assert "wyoming_qwen3tts.service.state" in graph["wyoming_qwen3tts.server.handler"]


def test_no_upward_import_between_layers():
    upward = []
    for module, targets in _graph().items():
        layer = _layer(module)
        if layer in TOP:
            continue
        for target in targets:
            other = _layer(target)
            if other in (layer, "root"):  # the root package holds only __version__
                continue
            if other not in ALLOWED.get(layer, set()):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports against the layering:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    graph = _graph()
    # A package's __init__ re-exporting its modules is not a cycle with them: drop package -> own child.
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


KNOWN_LARGE: set[str] = set()  # none: settings/ is split into the tree and flags, its checks, its constants


def test_largest_module_is_about_400_lines():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    big = {name: n for name, n in sizes.items() if n > 450 and name not in KNOWN_LARGE}
    assert not big, big


def test_engine_face_only_reexports():
    tree = ast.parse((ROOT / "engine" / "__init__.py").read_text())
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "ImportFrom", "Assign"}, kinds


# -- one vocabulary (core/vocab.py): no second definition ----------------------------------------------
VOCAB = ROOT / "core" / "vocab.py"


def _vocabulary() -> tuple[set[str], dict[frozenset, str]]:
    """The names core/vocab.py defines, and each enum's (and each tuple constant's) set of values."""
    from wyoming_qwen3tts.core import vocab

    tree = ast.parse(VOCAB.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names.add(leaf.id)
    names = {n for n in names if not n.startswith("_")}
    sets: dict[frozenset, str] = {}
    for name in names:
        value = getattr(vocab, name)
        if isinstance(value, type) and issubclass(value, vocab.Enum):
            sets[frozenset(member.value for member in value)] = name
        elif isinstance(value, tuple) and len(value) > 1 and all(isinstance(v, str) for v in value):
            sets[frozenset(value)] = name
    return names, sets


def _second_definitions(path: Path, names: set[str], sets: dict[frozenset, str], where: str) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name) and leaf.id in names:
                        found.append(f"{where}:{node.lineno}: assigns {leaf.id}")
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name in names:
            found.append(f"{where}:{node.lineno}: defines {node.name}")
        elif isinstance(node, (ast.Tuple, ast.Set, ast.List)) and len(node.elts) > 1:
            if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                values = frozenset(e.value for e in node.elts)  # type: ignore[attr-defined]
                if values in sets:
                    found.append(
                        f"{where}:{node.lineno}: a literal {sorted(values)} (core.vocab.{sets[values]})"
                    )
    return found


def test_vocabulary_is_declared_once():
    names, sets = _vocabulary()
    assert {"ModelRole", "VoiceKind", "QuantizeMode", "ErrorCode", "MIN_SPEED", "MAX_SPEED"} <= names
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path != VOCAB:
            found += _second_definitions(path, names, sets, path.relative_to(ROOT).as_posix())
    assert not found, "a second definition of core/vocab.py's vocabulary:\n" + "\n".join(found)


def test_a_second_definition_is_caught(tmp_path):
    names, sets = _vocabulary()
    probe = tmp_path / "probe.py"
    probe.write_text(
        'MIN_SPEED = 0.5\nMODES = ("none", "int8", "int4")\nKINDS = {"clone", "design", "style"}\n'
    )
    found = _second_definitions(probe, names, sets, "probe.py")
    assert len(found) == 3, found
    assert not _second_definitions(VOCAB.parent / "tempo.py", names, sets, "tempo.py")  # imports are fine
