"""The layer order (README, Layout): every module imports only from its own layer or below,
no two modules import each other (directly or round a loop), and imports inside functions
are only of the optional or heavy dependencies in LAZY_OK. Imports are read with ``ast``,
including those inside functions, so nothing is executed."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("curate", "train", "annotations", "experiments")

# (module prefix, layer), most specific first: a module's layer is that of its longest matching prefix
LAYERS = [("curate.basics", 0), ("train", 1), ("curate", 2), ("annotations", 3), ("experiments", 4),
          ("curate.cli", 5), ("curate.demo", 5)]

# The one list of what may be imported inside a function (loaded only when used): optional
# dependencies, and heavy ones kept off the start-up path of the CLI and of pipeline workers.
LAZY_OK = {
    "ray": "optional (curate[ray])",
    "curate.pipeline.ray_executor": "imports ray",
    "fasttext": "optional model runtime, loaded by the steps that use it",
    "matplotlib": "plots: slow to import, only for reports",
    "transformers": "optional (dev): Hugging Face interchange",
    "peft": "optional: LoRA interchange",
    "torch": "heavy: kept out of pipeline workers that need no model",
    "pyarrow": "heavy: loaded where Parquet is read",
    "datasets": "heavy: only for Hugging Face datasets on disk",
    "zstandard": "only for .zst inputs",
    "sentencepiece": "tokenizer backend, only for tokenizer.model files",
    "tokenizers": "tokenizer backend, only for tokenizer.json files",
    "safetensors": "only where weights are read or written",
    "jieba": "optional (curate[multilingual]): zh words",
    "sudachipy": "optional (curate[multilingual]): ja words",
    "kiwipiepy": "optional (curate[multilingual]): ko words",
    "pythainlp": "optional (curate[multilingual]): th words",
    "pyvi": "optional (curate[multilingual]): vi words",
}


def layer_of(module: str) -> int:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[best]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function?, line) for every import in ``path``."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, in_function, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package[: len(package) - child.level + 1] + ([base] if base else []))
                out.append((base, in_function, child.lineno))
                # `from pkg import module` imports pkg.module
                out.extend((f"{base}.{a.name}", in_function, child.lineno) for a in child.names
                           if (ROOT / base.replace(".", "/") / f"{a.name}.py").is_file()
                           or (ROOT / base.replace(".", "/") / a.name / "__init__.py").is_file())
            elif isinstance(child, ast.Call) and getattr(child.func, "attr", getattr(child.func, "id", "")) \
                    == "import_module" and child.args and isinstance(child.args[0], ast.Constant):
                out.append((child.args[0].value, in_function, child.lineno))
            visit(child, inside)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return out


def ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def graph() -> tuple[dict[str, set[str]], list[str]]:
    """module -> modules of ours it imports; and the list of rule breaks found on the way."""
    edges, problems = {}, []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = module_name(path)
            edges[name] = set()
            for target, in_function, line in imports(path):
                where = f"{path.relative_to(ROOT)}:{line}"
                if in_function and not any(target == k or target.startswith(k + ".") for k in LAZY_OK):
                    problems.append(f"{where}: import of {target} inside a function (not in LAZY_OK)")
                if not ours(target) or target == name:
                    continue
                if layer_of(target) > layer_of(name):
                    problems.append(f"{where}: {name} (layer {layer_of(name)}) imports {target} "
                                    f"(layer {layer_of(target)})")
                edges[name].add(target)
    return edges, problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import loops between modules (a package's __init__ importing its own modules is not one)."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if node.startswith(nxt + "."):  # a module importing its own package's __init__
                continue
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt in edges and not state.get(nxt):
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if not state.get(node):
            visit(node, [])
    return found


def test_every_import_goes_down_the_layer_order():
    _, problems = graph()
    assert not problems, "\n".join(problems)


def test_no_module_imports_itself_round_a_loop():
    found = cycles(graph()[0])
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_the_checker_sees_an_upward_import_and_a_loop(tmp_path):
    """The rules fire: an upward edge and a two-module loop are both reported."""
    assert layer_of("train.model") < layer_of("curate.pipeline.step") < layer_of("annotations.formats")
    assert layer_of("curate.basics.errors") == 0 and layer_of("curate.cli.train") == 5
    assert cycles({"a.x": {"a.y"}, "a.y": {"a.x"}}) == [["a.x", "a.y", "a.x"]]
    assert cycles({"a.x": {"a.y"}, "a.y": set()}) == []


def test_cli_commands_name_only_cli_modules():
    """The CLI's lazy command table names modules of the CLI layer only."""
    from curate.cli import COMMANDS

    assert all(layer_of(module) == 5 for module, _, _ in COMMANDS.values())


def test_run_command_and_workers_load_no_torch_or_matplotlib():
    """`curate run` and its worker processes import only what a pipeline needs: torch (~3 s to
    import) comes in only with a step that uses a model, matplotlib only when the report is drawn."""
    import subprocess
    import sys

    code = ("import sys, curate.cli.pipeline, curate.pipeline.runner, curate.steps; "
            "print(' '.join(m for m in ('torch', 'matplotlib', 'transformers', 'experiments') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    assert loaded == ""
