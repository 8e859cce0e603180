"""The audit holds a notebook for autograd that a graded function can reach and for any
hand on the grader's machinery, and never holds an honest one: not the solutions, not the
demo class, not the habits of honest students, not a student's own autograd experiment."""
from types import SimpleNamespace

import nbformat
import pytest

from grading import demo
from grading.audit import scan
from grading.course import Notebook, grade_id
from tests.kit import SOLUTIONS, blank, cell, mutated, solved
from tests.test_visible_predicts_grade import HABITS

NAMES = ['01_atomic_backprop', '02_fused_cross_entropy', '03_fused_batchnorm', '04_manual_training']
NB1, NB4 = NAMES[0], NAMES[3]


def release(name):
    return Notebook(name, blank(name), nbformat.read(SOLUTIONS / f'{name}.ipynb', as_version=4))


def with_cells(nb, *sources, after='stage1'):
    """nb with cells the student added after answer cell `after`."""
    at = next(i for i, c in enumerate(nb.cells) if grade_id(c) == after)
    for k, source in enumerate(sources):
        nb.cells.insert(at + 1 + k, nbformat.v4.new_code_cell(source))
    return nb


def holds(nb, name=NB1):
    """What the audit would hold the notebook for: [(text, cause)]."""
    return [(text, cause) for _, text, cause in scan(nb, release(name)) if cause is not None]


# ---------------------------------------------------------------- honest work is never held

@pytest.mark.parametrize('name', NAMES)
def test_the_solutions_and_the_blank_release_are_not_named_at_all(name):
    assert scan(solved(name), release(name)) == []
    assert scan(blank(name), release(name)) == []


def test_the_demo_class_is_not_held(tmp_path):
    assignment = SimpleNamespace(notebooks={name: release(name) for name in NAMES})
    folder = demo.build(tmp_path / 'demo', assignment)
    handed_in = sorted(folder.glob('*/*.ipynb'))
    assert len(handed_in) >= 3 * len(NAMES)
    for path in handed_in:
        name = path.stem.removesuffix('-Copy1')
        assert holds(nbformat.read(path, as_version=4), name) == [], path


@pytest.mark.parametrize('student', HABITS)
def test_the_habits_of_honest_students_are_not_held(student):
    name, _, edit, _ = HABITS[student]
    nb = mutated(name, edit) if edit else solved(name)
    assert holds(nb, name) == []


HONEST = {
    'a helper of their own': ('def softmax_rows(x):\n    e = (x - x.max(1, keepdim=True).values).exp()\n'
                              '    return e / e.sum(1, keepdim=True)\n'),
    'no_grad, as a block and as a decorator': ('@torch.no_grad()\ndef probe(x):\n    with torch.no_grad():\n'
                                               '        return x * 2\n'),
    'the lecture\'s update': ('def sgd(parameters, grads, lr):\n    for p, grad in zip(parameters, grads):\n'
                              '        p.data += -lr * grad\n        p.add_(grad, alpha=-lr)\n'),
    'the lecture\'s loop for dC': ('def scatter(dC, Xb, demb):\n    for k in range(Xb.shape[0]):\n'
                                   '        for j in range(Xb.shape[1]):\n            dC[Xb[k, j]] += demb[k, j]\n'),
    'magics': '%matplotlib inline\n%load_ext autoreload\n%autoreload 2\n%time x = torch.zeros(3)\n',
    'a timing cell': '%%timeit -n 3\ntorch.randn(32, 64) @ torch.randn(64, 27)\n',
    'printing versions and shapes': 'import math, numpy as np\nprint(torch.__version__, math.pi, np.zeros(2).shape)\n',
    'a class with __init__': ('class Probe:\n    def __init__(self, w):\n        super().__init__()\n'
                              '        self.w = w\n    def __call__(self, x):\n        return x @ self.w\n'),
    'files in the working folder': ('with open("losses.txt", "w") as f:\n    f.write("1.0")\n'
                                    'print(open("losses.txt").read())\n'),
    'a seed and threads': 'torch.manual_seed(42)\ntorch.set_num_threads(1)\n',
    'the alphabet from string': "import string\nchars = string.ascii_lowercase\n",
    'tensors saved and loaded': ("torch.save({'w': torch.ones(2)}, 'w.pt')\n"
                                 "w = torch.load('w.pt', weights_only=True)['w']\n"),
    'vars() of their own object': ("from types import SimpleNamespace\nconfig = SimpleNamespace(lr=0.1)\n"
                                   "print(vars(config)['lr'])\n"),
}


@pytest.mark.parametrize('habit', HONEST)
def test_honest_code_in_a_cell_of_their_own_is_not_held(habit):
    assert holds(with_cells(solved(NB1), HONEST[habit])) == []


def test_an_honest_helper_called_by_the_answer_is_not_held():
    nb = with_cells(solved(NB1), HONEST['a helper of their own'] + HONEST['the lecture\'s loop for dC'])
    cell(nb, 'stage2').source = cell(nb, 'stage2').source.replace('dh = dlogits @ W2.T', 'dh = softmax_rows(dlogits) @ W2.T')
    assert holds(nb) == []


EXPERIMENT = '''
# checking my dlogits against PyTorch, by hand
x = logits.detach().clone().requires_grad_()
loss_x = F.cross_entropy(x, Yb)
loss_x.backward()
print((x.grad - dlogits).abs().max())
print(torch.autograd.grad(F.cross_entropy(x, Yb), [x])[0].shape)
from torch.func import jacrev
with torch.enable_grad():
    w = torch.zeros(3, requires_grad=True)
def autograd_dlogits(logits, Yb):
    x = logits.detach().requires_grad_()
    F.cross_entropy(x, Yb).backward()
    return x.grad
'''


def test_an_autograd_experiment_in_a_cell_of_their_own_is_study_and_not_held():
    assert holds(with_cells(solved(NB1), EXPERIMENT)) == []
    assert holds(with_cells(solved(NB4), EXPERIMENT, after='backward'), NB4) == []


def test_a_local_named_grad_is_not_the_grad_an_experiment_imported():
    nb = with_cells(solved(NB4), 'from torch.autograd import grad\nprint(grad)', after='backward')
    c = cell(nb, 'train_step')
    c.source = c.source.replace('p.add_(grad, alpha=-lr)', 'p.sub_(lr * grad.view(p.shape))')
    assert holds(nb, NB4) == []


# ---------------------------------------------------------------- autograd a graded function reaches

AUTOGRAD = {
    'backward': 'x.sum().backward()',
    'autograd.grad': 'return torch.autograd.grad(x.sum(), [x])',
    '.grad': 'return x.grad',
    'enable_grad': 'with torch.enable_grad():\n        pass',
    'set_grad_enabled': 'torch.set_grad_enabled(True)',
    'requires_grad=': 'w = torch.zeros(3, requires_grad=True)',
    'requires_grad =': 'x.requires_grad = True',
    'requires_grad_': 'x.requires_grad_()',
    'retain_grad': 'x.retain_grad()',
    'saved_tensors_hooks': 'with graph.saved_tensors_hooks(id, id):\n        pass',
    'torch.func': 'return torch.func.functional_call(m, {}, x)',
    'functorch': 'import functorch',
    'forward_ad': 'import torch.autograd.forward_ad as fwad',
    'jvp': 'return torch.func.jvp(f, (x,), (x,))',
    'vjp': 'return torch.func.vjp(f, x)',
    'jacfwd': 'from torch.func import jacfwd',
    'jacrev': 'return torch.func.jacrev(f)(x)',
    'torch.ops': 'return torch.ops.aten.tanh_backward(x, x)',
    'torch._C': 'torch._C._set_grad_enabled(True)',
    'getattr with its name': "return getattr(torch, 'autograd')",
    'its name in a string': "return vars(torch)['autograd']",
    'a dotted name in a string': "return resolve('torch.autograd.grad')",
}


def calls_helper(nb, helper_source, gid='stage2', old='dh = dlogits @ W2.T', new='dh = helper(dlogits) @ W2.T'):
    nb = with_cells(nb, helper_source)
    c = cell(nb, gid)
    assert old in c.source
    c.source = c.source.replace(old, new)
    return nb


@pytest.mark.parametrize('spelling', AUTOGRAD)
def test_autograd_in_a_helper_the_answer_calls_is_named_with_where_it_is(spelling):
    nb = calls_helper(solved(NB1), f'def helper(x):\n    {AUTOGRAD[spelling]}\n    return x\n')
    found = holds(nb)
    assert [cause for _, cause in found] == ['autograd'], found
    assert found[0][0].endswith('inside `helper`, reached from the graded `backprop_layer2`'), found


def test_autograd_in_the_answer_itself_is_named_there():
    nb = solved(NB1)
    c = cell(nb, 'stage2')
    c.source = c.source.replace('dh = dlogits @ W2.T', 'dh = dlogits @ W2.T\n    h.sum().backward()')
    assert holds(nb) == [('calls `h.sum().backward()` inside `backprop_layer2`', 'autograd')]


def test_autograd_reached_through_globals_aliases_classes_and_defaults_is_named():
    ways = {
        'a global alias': ('bk = torch.Tensor.backward', 'bk(dlogits.sum())'),
        'an import elsewhere': ('from torch.autograd import grad as g', 'g(dlogits.sum(), [h])'),
        'a class of their own': ('class Tape:\n    def run(self, x):\n        x.sum().backward()',
                                 'Tape().run(dlogits)'),
        'a default argument': ('def helper(x):\n    return x.grad', None),
        'two helpers deep': ('def inner(x):\n    return x.grad\ndef helper(x):\n    return inner(x)', 'helper(h)'),
        'a name looked up in globals()': ('def helper(x):\n    return x.grad', "globals()['helper'](h)"),
    }
    for way, (added, use) in ways.items():
        if use is None:
            nb = calls_helper(solved(NB1), added, old='def backprop_layer2(dlogits, h, W2):',
                              new='def backprop_layer2(dlogits, h, W2, helper=helper):')
        else:
            nb = calls_helper(solved(NB1), added, new=f'dh = dlogits @ W2.T\n    {use}')
        assert [cause for _, cause in holds(nb)] == ['autograd'], (way, holds(nb))


def test_autograd_reached_through_a_kit_function_is_named():
    # train_step calls the kit's forward, which reads the global F: a student's F is reached
    found = holds(with_cells(solved(NB4), 'class Grads:\n    def softmax(self, x, dim):\n        x.sum().backward()\n'
                             '        return x\nF = Grads()\n', after='backward'), NB4)
    assert [cause for _, cause in found] == ['autograd'] and 'inside `softmax`, reached from' in found[0][0], found


def test_notebook_4_train_step_is_graded_for_the_trained_network_too():
    nb = solved(NB4)
    c = cell(nb, 'train_step')
    c.source = c.source.replace('p.add_(grad, alpha=-lr)', 'p.add_(p.grad, alpha=-lr)')
    assert holds(nb, NB4) == [('uses `p.grad` inside `train_step`', 'autograd')]


# ---------------------------------------------------------------- the machinery, wherever it is

MACHINERY = {
    'threading': 'import threading',
    'a thread imported by name': 'from threading import Thread',
    '_thread': 'import _thread',
    'concurrent': 'from concurrent.futures import ThreadPoolExecutor',
    'asyncio': 'import asyncio',
    'multiprocessing': 'import multiprocessing',
    'torch.multiprocessing': 'import torch.multiprocessing as mp',
    'subprocess': 'import subprocess',
    'os.fork': 'import os\nos.fork()',
    'os.system': 'import os\nos.system("true")',
    'os.popen': 'import os\nos.popen("true")',
    'os.execv': 'import os\nos.execv("/bin/true", ["true"])',
    'os.spawnl': 'import os\nos.spawnl(os.P_WAIT, "/bin/true", "true")',
    'os.posix_spawn': 'import os\nos.posix_spawn("/bin/true", ["true"], {})',
    'os.kill': 'import os\nos.kill(1, 9)',
    'from os import fork': 'from os import fork',
    'pty': 'import pty',
    'signal': 'import signal',
    'atexit': 'import atexit',
    'getattr with a computed name': "f = getattr(torch, 'auto' + 'grad')",
    'setattr with a computed name': "setattr(torch, name, None)",
    'delattr with a computed name': "delattr(x, name)",
    '__import__': "os = __import__('os')",
    'importlib': 'import importlib',
    'sys.modules': "import sys\nsys.modules['subprocess'].run(['true'])",
    'exec': "exec('x = 1')",
    'eval': "eval('1')",
    'compile': "compile('1', 'f', 'eval')",
    'sys._getframe': 'import sys\nf = sys._getframe(1)',
    'inspect': 'import inspect',
    'f_back': 'def up(frame):\n    return frame.f_back',
    'f_locals': 'def peek(frame):\n    return frame.f_locals',
    'f_globals': 'def peek(frame):\n    return frame.f_globals',
    'tb_frame': 'try:\n    1 / 0\nexcept Exception as e:\n    t = e.__traceback__.tb_frame',
    'gi_frame': 'g = (i for i in range(3))\nf = g.gi_frame',
    'gc': 'import gc',
    'ctypes': 'import ctypes',
    'a dunder attribute': "kit = cmp.__globals__['__file__']",
    '__builtins__': "b = __builtins__",
    'os.environ': "import os\nprint(os.environ['HOME'])",
    'os.getenv': "import os\nos.getenv('HOME')",
    'os.putenv': "import os\nos.putenv('A', 'b')",
    'writing /tmp': "open('/tmp/big', 'wb').write(b'x')",
    'writing /dev/shm': "from pathlib import Path\nPath('/dev/shm/big').write_bytes(b'x')",
    'writing above its folder': "open('../elsewhere.txt', 'w').write('x')",
    'torch.save outside': "torch.save({}, '/run/x.pt')",
    'os.read': 'import os\nos.read(0, 10)',
    'os.write': "import os\nos.write(1, b'x')",
    'os.dup': 'import os\nos.dup(1)',
    'os.fdopen': "import os\nos.fdopen(1, 'wb')",
    'open of a descriptor': "open(1, 'wb')",
    'open of /proc': "open('/proc/1/fd/1', 'a')",
    'sys.stdin': 'import sys\nsys.stdin.read()',
    'sys.__stdin__': 'import sys\nsys.__stdin__.read()',
    'sys.__stdout__': "import sys\nsys.__stdout__.write('x')",
    'fileno': 'import sys\nfd = sys.stdout.fileno()',
    'sys.settrace': 'import sys\nsys.settrace(None)',
    'sys.setprofile': 'import sys\nsys.setprofile(None)',
    'sys.addaudithook': 'import sys\nsys.addaudithook(print)',
    'replacing torch': 'torch.allclose = lambda *a, **k: True',
    'replacing torch.Tensor': 'torch.Tensor.backward = print',
    'replacing sys': 'import sys\nsys.exit = print',
    'builtins': 'import builtins\nbuiltins.print = None',
    'replacing checks': 'import checks.training\nchecks.training.steps_from_env = lambda: 500',
    'changing checks in place': 'import checks.training\nchecks.training.MEASURED.clear()',
    'replacing helpers': 'import helpers\nhelpers.cmp = print',
    'replacing a kit import': 'cmp.__code__ = print.__code__',
    'a shell escape': '!ls /',
    'a shell cell': '%%bash\nls /',
    'pip': '%pip install requests',
    'a socket': 'import socket',
    'IPython hooks': "get_ipython().events.register('post_run_cell', print)",
    'attrgetter with a computed name': "from operator import attrgetter\nag = attrgetter('auto' + 'grad')(torch)",
    'getattr passed around': 'g = getattr\nag = g(torch, name)',
    'vars() with a computed name': 'ag = vars(torch)[name]',
    'pkgutil': "import pkgutil\nag = pkgutil.resolve_name('torch.' + name)",
    'pydoc': 'from pydoc import locate',
    'IPython ev': "get_ipython().ev('1 + 1')",
    'a magic with computed code': "get_ipython().run_line_magic(name, '')",
    # what finds a function by a name in bytes or text, or runs code the audit cannot read
    'pickle': "import pickle\nwrite = pickle.loads(b'cos\\nwrite\\n.')",
    'copyreg': 'import copyreg',
    'torch.load of a pickle': "x = torch.load('x.pt', weights_only=False)",
    'numpy.load of a pickle': "import numpy as np\nx = np.load('x.npy', allow_pickle=True)",
    'vars() of a module': "import os\nwrite = vars(os)['write']",
    'timeit of a string': "import timeit\ntimeit.timeit('1')",
    'doctest': 'from doctest import run_docstring_examples',
    'logging.config': "import logging\nlogging.config.dictConfig({})",
    'unittest.mock': 'from unittest import mock',
    'torch.hub': "net = torch.hub.load('.', 'net', source='local')",
    'a library of its own': "torch.ops.load_library('mine.so')",
    'sympy, which runs strings as Python': "import sympy\nsympy.sympify(text)",
    'a template language': 'from jinja2 import Template',
    'a name resolved by traitlets': "from traitlets.utils.importstring import import_item",
    'a field found by a format string': "import string\nf = string.Formatter().get_field(text, [cmp], {})",
    'sys.path': "import sys\nfolders = sys.path\nfolders.append('.')",
    'a magic found by name': "run = get_ipython().find_line_magic('run')",
}


@pytest.mark.parametrize('spelling', MACHINERY)
def test_the_machinery_is_held_in_any_cell_even_one_nothing_calls(spelling):
    found = holds(with_cells(solved(NB1), MACHINERY[spelling]))
    assert found and all(cause == 'held' for _, cause in found), found


def test_what_is_held_says_what_and_where():
    nb = with_cells(solved(NB1), 'import threading\ndef later():\n    import os\n    os.fork()\n')
    assert holds(nb) == [('uses threading', 'held'), ('uses `os.fork` inside `later`', 'held')]
    at = [i for i, c in enumerate(nb.cells) if c.source.startswith('import threading')]
    assert {i for i, _, _ in scan(nb, release(NB1))} == set(at)


def test_notes_hold_nothing():
    typed = 'expected = [' + ', '.join(f'{k}.5' for k in range(12)) + ']'
    found = scan(with_cells(solved(NB1), typed, 'from helpers import cmp as compare\ncmp = print'), release(NB1))
    assert [cause for _, _, cause in found] == [None, None], found
    assert any('12 numbers typed in' in text for _, text, _ in found)
    assert any('defines `cmp` again' in text for _, text, _ in found)
