"""The package's architecture, checked from its source: layers import only downwards, no import cycle
(function-local imports included), and no module imports another's private names."""
import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / 'onecycle'

# Lowest first. Sibling packages on one level do not import each other.
LAYERS = [('core',), ('callbacks', 'checkpoint'), ('schedules',), ('distributed',), ('tuning',), ('<top>',)]
RANK = {pkg: i for i, level in enumerate(LAYERS) for pkg in level}


def _module_name(path: pathlib.Path) -> str:
    parts = ['onecycle', *path.relative_to(PKG).with_suffix('').parts]
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _package_of(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PKG / parts[1]).is_dir()) else '<top>'


def _imports(path: pathlib.Path):
    "(module imported, names imported, line) for every import in the file, at any depth."
    mod = _module_name(path)
    is_pkg = path.name == '__init__.py'
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith('onecycle'): yield a.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split('.') if is_pkg else mod.split('.')[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = '.'.join(base + ([node.module] if node.module else []))
            else: target = node.module or ''
            if target.startswith('onecycle'): yield target, [a.name for a in node.names], node.lineno


def _graph():
    files = sorted(PKG.rglob('*.py'))
    modules = {_module_name(f) for f in files}
    graph = {}
    for f in files:
        deps = set()
        for target, names, _ in _imports(f):
            # `from .pkg import module` imports a module; otherwise the target module itself
            subs = [f'{target}.{n}' for n in names if f'{target}.{n}' in modules]
            deps.update(subs or [target])
        graph[_module_name(f)] = deps & modules
    return graph


def test_the_tree_has_the_layers():
    for level in LAYERS[:-1]:
        for pkg in level: assert (PKG / pkg / '__init__.py').is_file(), pkg


def test_no_module_imports_from_a_higher_layer_or_a_sibling_package():
    bad = []
    for f in sorted(PKG.rglob('*.py')):
        mod = _module_name(f)
        here = _package_of(mod)
        for target, names, line in _imports(f):
            there = _package_of(target)
            if target == 'onecycle' and mod != 'onecycle.__main__': there = '<top>'
            if there == here: continue
            if RANK[there] >= RANK[here]: bad.append(f'{mod}:{line} imports {target} ({there} is not below {here})')
    assert not bad, '\n'.join(bad)


def test_no_import_cycle():
    graph = _graph()
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):   # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on_stack.add(v)
        for w in graph[v]:
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on_stack: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on_stack.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1 or v in graph[v]: cycles.append(sorted(comp))
    for v in graph:
        if v not in index: visit(v)
    assert not cycles, cycles


def test_no_module_imports_private_names_of_another():
    bad = [f'{_module_name(f)}:{line} imports {n} from {target}'
           for f in sorted(PKG.rglob('*.py')) for target, names, line in _imports(f)
           for n in names if n.startswith('_') and n != '__version__']
    assert not bad, '\n'.join(bad)


@pytest.mark.parametrize('cycle', [['a', 'b'], ['a', 'b', 'c']])
def test_the_cycle_finder_finds_cycles(cycle, monkeypatch):
    "The check above can fail: a made-up graph with a cycle is reported."
    graph = {m: {cycle[(i + 1) % len(cycle)]} for i, m in enumerate(cycle)}
    monkeypatch.setitem(globals(), '_graph', lambda: graph)
    with pytest.raises(AssertionError): test_no_import_cycle()
