"""Reading the student's code for attempts to bend the grader.

Scores never depend on this: the grader judges what the hidden tests hand in, outside the
student's sandbox, on inputs drawn for this run, so a trick earns nothing by itself. The
audit only names the attempt, so that the instructor sees it; a spelling it does not know
goes unnamed. It reads the cells the student wrote
(answer cells and cells they added), not the kit's own cells.
"""
import ast

from IPython.core.inputtransformer2 import TransformerManager

from grading.course import aliases, grade_id

# attributes that only matter to someone changing how cells run or how errors show
MACHINERY = {
    'showtraceback': 'silences tracebacks', '_showtraceback': 'silences tracebacks',
    'showsyntaxerror': 'silences tracebacks', 'set_custom_exc': 'silences tracebacks',
    'excepthook': 'silences tracebacks', 'InteractiveTB': 'silences tracebacks',
    'CustomTB': 'silences tracebacks', 'custom_exceptions': 'silences tracebacks',
    'run_cell': 'takes over how cells run', 'run_cell_async': 'takes over how cells run',
    'run_code': 'takes over how cells run', 'run_ast_nodes': 'takes over how cells run',
    'transform_cell': 'takes over how cells run', 'input_transformers_post': 'takes over how cells run',
    'ast_transformers': 'takes over how cells run', 'events': 'hooks into how cells run',
    'settrace': 'hooks into how code runs', 'setprofile': 'hooks into how code runs',
    'addaudithook': 'hooks into how code runs', 'meta_path': 'changes how modules are imported',
    'modules': 'tampers with imported modules', '__code__': "rewrites a function's code",
    '__torch_function__': 'overrides what torch functions do',
    '_getframe': 'reads the stack frames of its callers', 'f_locals': 'reads the stack frames of its callers',
    'f_back': 'reads the stack frames of its callers', 'f_globals': 'reads the stack frames of its callers',
    '_execution_engine': "calls autograd's engine directly",
}
CALLS = {'exec': 'runs code from a string (exec)', 'eval': 'runs code from a string (eval)',
         'compile': 'compiles code from a string', '__import__': 'imports by name (__import__)'}
IMPORTS = {'builtins': 'imports builtins', 'importlib': 'imports importlib', 'ctypes': 'imports ctypes',
           'checks': "imports the grader's checks", 'unittest': 'imports unittest.mock', 'mock': 'imports mock',
           'torch.overrides': 'imports torch.overrides', 'runpy': 'runs other files (runpy)',
           'subprocess': 'starts other programs (subprocess)', 'multiprocessing': 'starts processes (multiprocessing)',
           'inspect': 'imports inspect (reads stack frames?)', 'socket': 'opens sockets', 'signal': 'handles or sends signals (imports signal)'}
# calls that start, fork or kill processes
PROCESS_CALLS = {'system', 'popen', 'fork', 'forkpty', 'kill', 'killpg', 'execv', 'execve', 'execvp',
                 'spawnv', 'posix_spawn', 'setsid'}
WRITE_MODES = ('w', 'a', 'x', '+')
# replacing anything under these changes what the checks (or Python itself) do
SENSITIVE = {'torch', 'builtins', '__builtins__', 'sys', 'checks', 'helpers', 'IPython', 'numpy',
             'math', 'get_ipython()'}
PASTED = 10  # this many float literals in one cell look like numbers copied from an output


def python_of(source):
    """The cell as plain Python (magics become function calls), or None if it is not Python."""
    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return None


def dotted(node, names):
    """'torch.allclose' for the expression torch.allclose (import aliases spelled out), or None."""
    parts = []
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        parts.append('.' + node.attr if isinstance(node, ast.Attribute) else '[...]')
        node = node.value
    if isinstance(node, ast.Name):
        root = names.get(node.id, node.id)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        root = node.func.id + '()'
    else:
        return None
    return root + ''.join(parts[::-1])


def sensitive(what):
    return what is not None and what.split('.')[0].split('[')[0] in SENSITIVE


class Scan(ast.NodeVisitor):
    def __init__(self, names, kit_names, answer):
        self.names, self.kit_names, self.answer = names, kit_names, answer
        self.found, self.in_function = [], None

    def flag(self, text):
        if text not in self.found:
            self.found.append(text)

    def replaced(self, target):
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            what = dotted(target, self.names)
            if isinstance(target, ast.Attribute) and target.attr in MACHINERY:
                self.flag(f'{MACHINERY[target.attr]} (replaces `{what}`)')
            elif sensitive(what):
                self.flag(f'replaces `{what}`')
        elif isinstance(target, ast.Name) and target.id in self.kit_names:
            self.flag(f'redefines `{target.id}`, which the kit provides')
        elif isinstance(target, (ast.Tuple, ast.List, ast.Starred)):
            for t in getattr(target, 'elts', [getattr(target, 'value', None)]):
                self.replaced(t)

    def visit_Assign(self, node):
        for t in node.targets:
            self.replaced(t)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self.replaced(node.target)
        self.generic_visit(node)

    visit_AnnAssign = visit_AugAssign

    def visit_Delete(self, node):
        for t in node.targets:
            self.replaced(t)
        self.generic_visit(node)

    def visit_FunctionDef(self, node):
        if node.name in self.kit_names:
            self.flag(f'redefines `{node.name}`, which the kit provides')
        outer, self.in_function = self.in_function, node.name
        self.generic_visit(node)
        self.in_function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        if node.name in self.kit_names:
            self.flag(f'redefines `{node.name}`, which the kit provides')
        self.generic_visit(node)

    def visit_Import(self, node):
        for bound, what in aliases(node).items():
            if bound in self.kit_names and what != self.kit_names[bound]:
                self.flag(f'redefines `{bound}`, which the kit provides')
        for a in node.names:
            for mod, what in IMPORTS.items():
                if a.name == mod or a.name.startswith(mod + '.'):
                    self.flag(what)
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        for bound, what in aliases(node).items():
            if bound in self.kit_names and what != self.kit_names[bound]:
                self.flag(f'redefines `{bound}`, which the kit provides')
        mod = node.module or ''
        for m, what in IMPORTS.items():
            if mod == m or mod.startswith(m + '.') or (mod == 'torch' and m == 'torch.overrides'
                                                       and any(a.name == 'overrides' for a in node.names)):
                self.flag(what)
        self.generic_visit(node)

    def visit_Call(self, node):
        f = node.func
        if isinstance(f, ast.Name) and f.id in CALLS:
            self.flag(CALLS[f.id])
        if isinstance(f, ast.Name) and f.id in ('setattr', 'delattr') and node.args:
            what = dotted(node.args[0], self.names)
            attr = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else '?'
            if sensitive(what):
                self.flag(f'replaces `{what}.{attr}` (with {f.id})')
            if attr in MACHINERY:
                self.flag(f'{MACHINERY[attr]} (with {f.id})')
        if isinstance(f, ast.Attribute) and f.attr == 'register' and isinstance(f.value, ast.Attribute) \
                and f.value.attr == 'events':
            self.flag('hooks into how cells run (events.register)')
        if isinstance(f, ast.Attribute) and f.attr in PROCESS_CALLS and dotted(f, self.names) in (
                f'os.{f.attr}', f'pty.{f.attr}'):
            self.flag(f'starts or stops processes (`os.{f.attr}`)')
        if written_path(node, f) and outside(written_path(node, f)):
            self.flag(f'writes a file outside its folder ({written_path(node, f)})')
        if self.answer and self.in_function and isinstance(f, ast.Attribute) and f.attr == 'backward':
            self.flag(f'calls .backward() inside `{self.in_function}` (autograd is off while grading)')
        self.generic_visit(node)

    def visit_Attribute(self, node):
        autograd_grad = isinstance(node.value, ast.Attribute) and node.value.attr == 'autograd' or \
            (dotted(node, self.names) or '').endswith('autograd.grad')
        if self.answer and self.in_function and node.attr == 'grad' and isinstance(node.ctx, ast.Load) \
                and not autograd_grad:
            self.flag(f'reads `.grad` inside `{self.in_function}`: PyTorch\'s own gradient, which the '
                      'fresh inputs of the hidden check do not have')
        if self.answer and self.in_function and node.attr == 'autograd':
            self.flag(f'uses torch.autograd inside `{self.in_function}` (autograd is off while grading)')
        if isinstance(node.ctx, ast.Load) and node.attr in MACHINERY and node.attr not in ('modules', 'events'):
            self.flag(f'{MACHINERY[node.attr]} (uses `{dotted(node, self.names) or node.attr}`)')
        self.generic_visit(node)


def written_path(call, f):
    """The constant path an open(path, 'w')/Path(path).write_text(...) call writes, or None."""
    if isinstance(f, ast.Name) and f.id == 'open' and call.args and isinstance(call.args[0], ast.Constant):
        mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == 'mode'), None)
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(m in mode.value for m in WRITE_MODES):
            return str(call.args[0].value)
    if isinstance(f, ast.Attribute) and f.attr in ('write_text', 'write_bytes', 'open') and \
            isinstance(f.value, ast.Call) and f.value.args and isinstance(f.value.args[0], ast.Constant):
        if f.attr != 'open' or any(isinstance(a, ast.Constant) and any(m in str(a.value) for m in WRITE_MODES)
                                   for a in call.args):
            return str(f.value.args[0].value)
    return None


def outside(path):
    return path.startswith(('/', '~')) or '..' in path.replace('\\', '/').split('/')


def floats(tree):
    return sum(1 for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, float))


def scan(nb, release):
    """[(cell index, what it does)] for the student's code cells of notebook `nb`."""
    trees = [(i, c, python_of(c.source)) for i, c in enumerate(nb.cells) if c.cell_type == 'code']
    names = {}
    for _, _, tree in trees:
        if tree is not None:
            names.update(aliases(tree))
    found = []
    for i, cell, tree in trees:
        gid = grade_id(cell)
        answer = gid in release.solutions
        if tree is None or (gid in release.locked) or (not answer and cell.source.strip() in release.kit_sources):
            continue
        visitor = Scan(names, release.kit_names, answer)
        visitor.visit(tree)
        if floats(tree) >= PASTED:
            visitor.flag(f'has {floats(tree)} numbers typed in: values pasted from an output?')
        found += [(i, text) for text in visitor.found]
    return found
