"""The audit: scan(nb, release) -> [(cell index, text, cause)], read before any code runs.

In the cells the student wrote it names autograd where a graded function can reach it,
following names from cell to cell (cause 'autograd'; an experiment none reaches is study), and
the grader's machinery anywhere (cause 'held'): either holds the notebook for review, since
code that reaches the judge's memory or pipe could forge its autograd count. A note (cause
None) holds nothing: many numbers typed in, a name the kit provides defined again.
"""
import ast
import re

from IPython.core.inputtransformer2 import TransformerManager

import checks
from grading.course import aliases, grade_id

AUTOGRAD = set('''backward autograd grad grad_fn enable_grad set_grad_enabled requires_grad requires_grad_
    retain_grad retains_grad register_hook saved_tensors_hooks functorch forward_ad jvp vjp jacfwd jacrev hessian
    _grad _grad_fn _backward_hooks'''.split())
TORCH_ONLY = {'func', 'ops', '_ops', '_C', '_functorch'}  # autograd when hung off torch: torch.func, torch._C ...
AUTOGRAD_MODULES = ('torch.autograd', 'torch.func', 'torch._C', 'torch.ops', 'torch._functorch', 'functorch',
                    'torch.nn.grad')
# the last two lines: what finds a function, or runs code, from a name or text the audit cannot read
MODULES = set('''threading _thread concurrent multiprocessing torch.multiprocessing subprocess pty signal _signal
    atexit asyncio importlib ctypes _ctypes gc inspect socket runpy posix _posixsubprocess builtins code marshal
    mmap faulthandler pkgutil pydoc pickle _pickle copyreg shelve dill cloudpickle joblib imp zipimport site
    doctest timeit logging.config unittest.mock torch.hub torch.package torch.utils.cpp_extension numpy.ctypeslib
    sympy jinja2 mako yaml traitlets pkg_resources cffi _cffi_backend'''.split())
UNPICKLES = {'weights_only': True, 'allow_pickle': False}  # torch.load, numpy.load: anything else unpickles
OS = set('''fork forkpty system popen kill killpg pidfd_open register_at_fork setsid read write pread pwrite readv
    writev sendfile dup dup2 fdopen open pipe pipe2 openpty memfd_create environ environb getenv getenvb putenv
    unsetenv'''.split())
SYS = set('''modules settrace setprofile addaudithook stdin _current_frames meta_path path_hooks monitoring
    remote_exec call_tracing excepthook path path_importer_cache'''.split())
# frames, descriptors, IPython's machinery
ANYWHERE = set('''_getframe currentframe f_back f_locals f_globals f_builtins f_code f_trace tb_frame tb_next
    gi_frame cr_frame ag_frame fileno load_library get_field import_item _import_dotted_name find_magic
    find_line_magic find_cell_magic magics_manager run_cell run_cell_async run_code run_ast_nodes transform_cell ev ex
    input_transformers_post input_transformers_cleanup ast_transformers events showtraceback set_custom_exc
    InteractiveTB CustomTB custom_exceptions user_ns user_global_ns displayhook safe_execfile
    safe_run_module'''.split())
BUILTINS = {'exec', 'eval', 'compile', '__import__', 'breakpoint'}
NAMED_BY = {'getattr': 1, 'setattr': 1, 'delattr': 1, 'hasattr': 1, 'attrgetter': 0, 'methodcaller': 0}  # its argument
SAFE_DUNDERS = {'__init__', '__name__', '__qualname__', '__doc__', '__version__', '__main__'}
SHELL_MAGICS = set('''system sx sc bash sh script perl ruby python python2 python3 pypy run load env set_env pip
    conda mamba load_ext reload_ext alias macro store writefile file debug killbgscripts autoawait'''.split())
SENSITIVE = set('torch sys builtins __builtins__ checks helpers IPython get_ipython() os numpy math'.split())
MUTATORS = set('clear update pop popitem append extend insert remove setdefault add discard __setitem__'.split())
RAW_PATHS = ('/proc', '/dev/fd', '/dev/std', '/dev/tty')
PASTED = 10  # this many float literals in one cell look like numbers copied from an output


def python_of(source):
    """The cell as plain Python (magics become function calls), or None if it is not Python."""
    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return None


def dotted(node, names):
    """'torch.nn.functional.softmax' for F.softmax (import aliases spelled out), or None."""
    tail = ''
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        tail = ('.' + node.attr if isinstance(node, ast.Attribute) else '[...]') + tail
        node = node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id + '()' + tail
    return names.get(node.id, node.id) + tail if isinstance(node, ast.Name) else None


def root_of(node, names):
    return (dotted(node, names) or '').split('.')[0].split('[')[0]


def spelled(node):
    """The student's own spelling of an expression, short."""
    text = ast.unparse(node)
    return text if len(text) <= 48 else '...' + text[-45:]


def dunder(name):
    return re.fullmatch(r'__\w+__', name) is not None and name not in SAFE_DUNDERS


def binds(nodes):
    """The names these statements bind in their own scope (not in functions they define)."""
    names, declared, todo = set(), set(), list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declared.update(node.names)
        elif not isinstance(node, ast.Lambda):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split('.')[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
            todo.extend(ast.iter_child_nodes(node))
    return names - declared


def written_path(call, names):
    """The constant path a call writes (open(path, 'w'), Path(path).write_text(...),
    torch.save(x, path)), or None."""
    f, args = call.func, call.args
    const = [a.value if isinstance(a, ast.Constant) else None for a in args]
    mode = next((k.value for k in call.keywords if k.arg == 'mode'), args[1] if len(args) > 1 else None)
    writes = isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(m in mode.value for m in 'wax+')
    if isinstance(f, ast.Name) and f.id == 'open' and const and isinstance(const[0], str) and writes:
        return const[0]
    if dotted(f, names) in ('torch.save', 'numpy.save') and len(const) > 1 and isinstance(const[1], str):
        return const[1]
    if isinstance(f, ast.Attribute) and f.attr in ('write_text', 'write_bytes', 'open', 'touch', 'mkdir') and \
            isinstance(f.value, ast.Call) and f.value.args and isinstance(f.value.args[0], ast.Constant):
        opens_to_write = any(isinstance(c, str) and any(m in c for m in 'wax+') for c in const)
        if f.attr != 'open' or opens_to_write:
            return str(f.value.args[0].value)
    return None


class Reader(ast.NodeVisitor):
    """One top-level statement of the student's: the notebook globals it reads, and what it
    does, each (cause, text, the function it is in or None)."""

    def __init__(self, names):
        self.names = names  # import aliases, the kit's and the student's: {'F': 'torch.nn.functional'}
        self.reads, self.found = set(), []
        self.scopes, self.functions, self.inside_autograd = [], [], 0

    def flag(self, cause, text):
        where = self.functions[-1] if self.functions else None
        if (cause, text, where) not in self.found:
            self.found.append((cause, text, where))

    def autograd(self, parts, text):
        """Name an autograd spelling, once: not again for the parts of the same expression."""
        if not self.inside_autograd:
            self.flag('autograd', text)
        self.inside_autograd += 1
        for part in parts:
            self.visit(part)
        self.inside_autograd -= 1

    # scopes: what a function (or lambda) binds is its own, not a notebook global
    def visit_FunctionDef(self, node):
        args = node.args
        for outer in getattr(node, 'decorator_list', []) + args.defaults + [d for d in args.kw_defaults if d]:
            self.visit(outer)  # evaluated where the function is defined
        body = node.body if isinstance(node.body, list) else [node.body]
        self.scopes.append(binds(body) | {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs +
                                          [args.vararg, args.kwarg] if a})
        self.functions.append(getattr(node, 'name', self.functions[-1] if self.functions else None))
        for statement in body:
            self.visit(statement)
        self.functions.pop()
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_ListComp(self, node):
        self.scopes.append({n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)})
        self.generic_visit(node)
        self.scopes.pop()

    visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_ListComp

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and not any(node.id in s for s in self.scopes):
            self.reads.add(node.id)
            if node.id in BUILTINS or node.id in NAMED_BY:  # a call of getattr(...) never comes here
                self.flag('held', f'uses `{node.id}`')
        if dunder(node.id):
            self.flag('held', f'uses `{node.id}`')

    def visit_Constant(self, node):
        if not isinstance(node.value, str):
            return
        if node.value.isidentifier():
            self.reads.add(node.value)  # globals()['helper'] reads helper too
        if node.value in AUTOGRAD or node.value == '_C' or \
                re.fullmatch(r'[\w.]+', node.value) and AUTOGRAD & set(node.value.split('.')):
            self.autograd([], f"names '{node.value[:40]}' in a string")
        elif dunder(node.value):
            self.flag('held', f"names '{node.value}' in a string")
        elif node.value.startswith(RAW_PATHS):
            self.flag('held', f"names '{node.value[:40]}'")

    def local(self, node):
        """Whether the expression starts from a name the enclosing function binds."""
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return isinstance(node, ast.Name) and any(node.id in s for s in self.scopes)

    def visit_Import(self, node):
        for a in node.names:
            module, what = (node.module or '', a.name) if isinstance(node, ast.ImportFrom) else (a.name, None)
            full = f'{module}.{what}' if what else module
            if full.startswith(AUTOGRAD_MODULES) or (module == 'torch' and what in AUTOGRAD | TORCH_ONLY):
                self.flag('autograd', f'imports {full}')
            elif any(full == m or full.startswith(m + '.') for m in MODULES) or what and dunder(what) or \
                    module in ('os', 'posix') and what in OS | {'exec', 'spawn'} or module == 'sys' and what in SYS or \
                    what in ANYWHERE:
                self.flag('held', f'uses {full}')
            elif full.split('.')[0] == 'checks':
                self.flag(None, "imports the grader's checks")

    visit_ImportFrom = visit_Import

    def attribute(self, node, attr, value, parts=None):
        """Name what reading `attr` of `value` does (node: the expression, for its spelling;
        parts: what else to read in it, by default `value`)."""
        parts = [value] if parts is None else parts
        base = dotted(value, {} if self.local(value) else self.names) or ''
        chain = [attr] + re.findall(r'\.(\w+)', base)  # torch.ops.aten.tanh_backward: ops is in the chain
        if base in ('os', 'posix') and (attr in OS or attr.startswith(('exec', 'spawn', 'posix_spawn'))) or \
                base == 'sys' and attr in SYS or attr in ANYWHERE or dunder(attr) or \
                f'{base}.{attr}' in MODULES:
            self.flag('held', f'uses `{spelled(node)}`')
        if AUTOGRAD & set(chain) or (TORCH_ONLY & set(chain) and root_of(value, self.names) == 'torch'):
            return self.autograd(parts, f'uses `{spelled(node)}`')
        if attr == 'system' and base == 'get_ipython()':
            self.flag('held', 'runs a shell command (!)')
        for part in parts:
            self.visit(part)

    def visit_Attribute(self, node):
        if self.replaced(node):
            return self.generic_visit(node)
        self.attribute(node, node.attr, node.value)

    def visit_Subscript(self, node):
        space = dotted(node.value, {}) if isinstance(node.value, ast.Call) else None
        key = node.slice.value if isinstance(node.slice, ast.Constant) else None
        if space in ('vars()', 'globals()', 'locals()') and key is None:
            self.flag('held', f'looks up a computed name in {space}')
        self.replaced(node)
        if space == 'vars()' and isinstance(key, str) and len(node.value.args) == 1:  # vars(os)['write']: os.write
            return self.attribute(node, key, node.value.args[0])
        self.generic_visit(node)

    def replaced(self, target):
        """Name an assignment (or del) that changes what torch, sys, checks ... hold; whether it is one."""
        changes = not isinstance(target.ctx, ast.Load) and root_of(target, self.names) in SENSITIVE
        if changes:
            self.flag('held', f'replaces `{spelled(target)}`')
        return changes

    def visit_keyword(self, node):
        if node.arg == 'requires_grad' and not (isinstance(node.value, ast.Constant) and node.value.value is False):
            return self.autograd([node.value], f'asks for requires_grad={spelled(node.value)}')
        safe = isinstance(node.value, ast.Constant) and node.value.value is UNPICKLES.get(node.arg)
        if node.arg in UNPICKLES and not safe or node.arg == 'pickle_module':
            self.flag('held', f'unpickles ({node.arg}={spelled(node.value)})')
        self.generic_visit(node)

    def visit_Call(self, node):
        f, args = node.func, node.args
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name in NAMED_BY and len(args) > NAMED_BY[name]:
            what = args[NAMED_BY[name]]
            if not isinstance(what, ast.Constant):
                self.flag('held', f'calls {name}() with a computed name')
            elif name == 'getattr' and isinstance(what.value, str):
                return self.attribute(node, what.value, args[0], args + node.keywords)
            elif name in ('setattr', 'delattr') and root_of(args[0], self.names) in SENSITIVE:
                self.flag('held', f'replaces `{spelled(args[0])}.{what.value}` ({name})')
            if isinstance(f, ast.Name):
                return [self.visit(a) for a in args + node.keywords]
        if isinstance(f, ast.Attribute) and f.attr in MUTATORS and root_of(f.value, self.names) in \
                SENSITIVE - {'torch', 'numpy', 'math'}:
            self.flag('held', f'changes `{spelled(f.value)}` in place')
        if (name == 'open' or dotted(f, self.names) in ('io.open', 'io.FileIO')) and args and \
                isinstance(args[0], ast.Constant) and isinstance(args[0].value, int):
            self.flag('held', f'opens file descriptor {args[0].value}')
        path = written_path(node, self.names)
        if path is not None and (path.startswith(('/', '~')) or '..' in path.replace('\\', '/').split('/')):
            self.flag('held', f'writes {path!r}, outside its working folder')
        if name in ('run_line_magic', 'run_cell_magic') and args:
            if not all(isinstance(a, ast.Constant) for a in args):
                self.flag('held', f'calls {name}() with computed code')
            else:
                self.magic(str(args[0].value), [a.value for a in args[1:]])
        if isinstance(f, ast.Attribute) and f.attr in AUTOGRAD:
            return self.autograd([f.value] + args + node.keywords, f'calls `{spelled(f)}()`')
        self.generic_visit(node)

    def magic(self, name, texts):
        """%name ...: a shell or another file is machinery; the code of %time, %timeit ... is read."""
        if name in SHELL_MAGICS and not (name == 'load_ext' and texts == ['autoreload']):
            return self.flag('held', f'runs %{name}')
        code = str(texts[-1]) if texts else ''
        words = code.split() if len(texts) == 1 else [code]  # a line magic's options come first: -n 10 ...
        for k in range(len(words)):
            tree = python_of(' '.join(words[k:]))
            if tree is not None:
                return self.visit(tree)


def scan(nb, release):
    """[(cell index, text, cause)] for the cells of notebook `nb` the student wrote."""
    cells = []  # (cell index, grade id if an answer cell, syntax tree, written by the student)
    for i, cell in enumerate(nb.cells):
        gid = grade_id(cell)
        tree = python_of(cell.source) if cell.cell_type == 'code' else None
        if tree is not None:
            answer = gid in release.solutions
            kit = gid in release.locked or (not answer and cell.source.strip() in release.kit_sources)
            cells.append((i, gid if answer else None, tree, not kit))
    names = dict(release.kit_names)
    for _, _, tree, _ in cells:
        names.update(aliases(tree))

    statements = []  # (cell index, grade id if an answer cell, statement, its Reader, written by the student)
    binders = {}  # global name: the statements that bind it
    for i, gid, tree, student in cells:
        for statement in tree.body:
            reader = Reader(names)
            reader.visit(statement)
            for name in binds([statement]):
                binders.setdefault(name, []).append(len(statements))
            statements.append((i, gid, statement, reader, student))

    # what the graded functions reach (checks.spec(gid).answer; notebook 4 is trained with train_step),
    # followed by name from statement to statement (the kit's own functions included: a student's
    # name they read counts as reached); an answer cell that binds no graded name is reached whole
    specs = checks.specs()
    graded = {'train_step' if gid == 'test_trained' else specs[gid].answer for gid in release.graded if gid in specs}
    todo = [(k, name) for name in sorted(graded) for k in binders.get(name, [])]
    rooted = {statements[k][0] for k, _ in todo}
    todo += [(k, gid) for k, (i, gid, *_) in enumerate(statements) if gid and i not in rooted]
    reached = {}
    while todo:
        k, root = todo.pop(0)
        if k not in reached:
            reached[k] = root
            todo += [(j, root) for name in sorted(statements[k][3].reads) for j in binders.get(name, [])]

    found = []
    for k, (i, _, statement, reader, student) in enumerate(statements):
        if not student:
            continue
        bound = binds([statement])
        spellings = {}  # one line per function that uses autograd: {where: [what]}
        for cause, text, where in reader.found:
            if cause != 'autograd':
                found.append((i, text + (f' inside `{where}`' if where else ''), cause))
            elif k in reached:  # else study: no graded function reaches it
                spellings.setdefault(where, []).append(text)
        for where, texts in spellings.items():
            text = '; '.join(texts[:3]) + (f' and {len(texts) - 3} more' if len(texts) > 3 else '')
            text += f' inside `{where}`' if where else f' for `{", ".join(sorted(bound))}`' if bound else ''
            if where != reached[k]:
                text += f', reached from the graded `{reached[k]}`'
            found.append((i, text, 'autograd'))
        for name in sorted(bound & set(release.kit_names)):
            if not (isinstance(statement, (ast.Import, ast.ImportFrom)) and
                    aliases(statement).get(name) == release.kit_names[name]):
                found.append((i, f'defines `{name}` again, which the kit provides', None))
    for i, _, tree, student in cells:
        typed = sum(isinstance(n, ast.Constant) and isinstance(n.value, float) for n in ast.walk(tree))
        if student and typed >= PASTED:
            found.append((i, f'has {typed} numbers typed in: values pasted from an output?', None))
    return list(dict.fromkeys(found))
