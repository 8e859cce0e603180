"""Under a wrong cmp table, a Jupyter kernel shows one picture of the first wrong gradient of
two or more dimensions, and the picture names the pattern its hint names."""
import subprocess
import sys

import IPython
import IPython.display
import nbformat
import pytest
import torch
import torch.nn.functional as F
from IPython.core.events import EventManager, available_events

import helpers.compare
from helpers import cmp, forward_atoms, notebook1_batch
from tests.kit import ROOT, execute


class KernelShell:
    """What cmp sees of ipykernel's shell: a kernel, and IPython's events."""
    kernel = object()

    def __init__(self):
        self.events = EventManager(self, available_events)


@pytest.fixture
def kernel(monkeypatch):
    """cmp as if in a Jupyter kernel; run(lines) is one cell: its printed text and its pictures."""
    shell, shown = KernelShell(), []
    monkeypatch.setattr(IPython, 'get_ipython', lambda: shell)
    monkeypatch.setattr(IPython.display, 'display', shown.append)
    monkeypatch.setattr(helpers.compare, 'first_wrong', None)

    def run(lines, capsys):
        shown.clear()
        for name, dt, t in lines:
            cmp(name, dt, t)
        shell.events.trigger('post_run_cell', None)
        return capsys.readouterr().out, list(shown)
    return run


@pytest.fixture(scope='module')
def net():
    """Notebook 1's network and batch after loss.backward(): PyTorch's gradients to compare with."""
    params, Xb, Yb, _ = notebook1_batch()
    d = forward_atoms(params, Xb, Yb)
    d['loss'].backward()
    d.update(zip(['C', 'W1', 'b1', 'W2', 'b2', 'bngain', 'bnbias'], params), Xb=Xb, Yb=Yb)
    return d


def classic_mistakes(d):
    """(what, name, the student's gradient, PyTorch's tensor, words the hint and the picture share)"""
    n = d['Xb'].shape[0]
    dlogits = F.softmax(d['logits'], 1).detach()
    dlogits[range(n), d['Yb']] -= 1  # and no / n
    dbndiff = d['bndiff'].grad
    dC = torch.zeros_like(d['C'])
    dC[d['Xb']] += d['emb'].grad
    square = torch.randn(8, 8, requires_grad=True)
    (square * torch.randn(8, 8)).sum().backward()
    return [
        ('a transposed dW', 'W2', dlogits.T @ d['h'].detach() / n, d['W2'], ['transposed']),
        ('a transposed square matrix', 'M', square.grad.T.clone(), square, ['transposed']),
        ('a sum over the wrong dimension', 'hprebn', dbndiff - dbndiff.sum(1, keepdim=True) / n,
         d['hprebn'], ['stripes', 'wrong dimension']),
        ('a sum over the wrong dimension, kept', 'bnmeani', -dbndiff.sum(1, keepdim=True),
         d['bnmeani'], ['wrong dimension']),
        ('a missing 1/n', 'logits', dlogits, d['logits'], ['32 times', 'missing 1/32']),
        ('a lost repeated index: dC[Xb] += demb', 'C', dC, d['C'], ['whole rows', 'repeated index']),
        ("Bessel's correction", 'bndiff2', d['bndiff2'].grad * 31 / 32, d['bndiff2'], ['31/32', 'bessel']),
    ]


def test_each_classic_mistake_gets_one_picture_that_names_what_its_hint_names(net, kernel, capsys):
    for what, name, dt, t, words in classic_mistakes(net):
        out, shown = kernel([(name, dt, t)], capsys)
        hint = out.split('hint:', 1)[1].lower()
        assert len(shown) == 1, what
        picture = shown[0]
        assert picture.title.startswith('d' + name), what
        for word in words:
            assert word in hint and word in picture.title.lower(), (what, word, hint, picture.title)
        assert picture._repr_png_().startswith(b'\x89PNG'), what
        assert repr(picture) == f'<picture of {picture.title}>'


def test_a_table_pictures_only_its_first_wrong_gradient_of_two_dimensions(net, kernel, capsys):
    b2, W1, C = net['b2'], net['W1'], net['C']
    out, shown = kernel([('b2', 2 * b2.grad, b2), ('W1', W1.grad.clone(), W1),
                         ('W1', -W1.grad, W1), ('C', 2 * C.grad, C)], capsys)
    assert out.count('hint:') == 3
    assert [p.title for p in shown] == ["dW1 (30, 64): -1 times PyTorch's everywhere: a sign is flipped"]
    out, shown = kernel([('W1', W1.grad.clone(), W1)], capsys)  # the next cell starts afresh
    assert shown == []


def test_a_right_table_or_a_wrong_vector_alone_shows_no_picture(net, kernel, capsys):
    W1, b2, logit_maxes = net['W1'], net['b2'], net['logit_maxes']
    out, shown = kernel([('W1', W1.grad.clone(), W1), ('W1', W1.grad * (1 + 1e-7), W1),
                         ('logit_maxes', -logit_maxes.grad, logit_maxes)], capsys)  # within rounding
    assert 'hint' not in out and shown == []
    out, shown = kernel([('b2', 2 * b2.grad, b2), ('W1', None, W1), ('W1', W1.grad.tolist(), W1)], capsys)
    assert out.count('hint:') == 2 and 'not written yet' in out and shown == []


def test_a_wrong_shape_shows_both_tensors_each_with_its_shape(net, kernel, capsys):
    emb = net['emb']
    _, [picture] = kernel([('emb', emb.grad.view(32, 30), emb)], capsys)
    assert picture.title == 'demb: shape (32, 30), should be (32, 3, 10): .view((32, 3, 10))'
    assert [title for title, _ in picture.panels] == ['yours (32, 30)', "PyTorch's (32, 3, 10) shown as 32x30"]
    assert picture._repr_png_().startswith(b'\x89PNG')


def test_a_tensor_of_three_dimensions_is_drawn_flattened_and_says_so(net, kernel, capsys):
    emb = net['emb']
    wrong = emb.grad.clone()
    wrong[4, 1, :] = float('nan')
    _, [picture] = kernel([('emb', wrong, emb)], capsys)
    assert picture.title == 'demb (32, 3, 10) shown as 32x30: NaN or inf (black)'
    assert [tuple(values.shape) for _, values in picture.panels] == [(32, 30), (32, 30)]
    assert picture.panels[0][1][4, 10:20].isnan().all()
    assert picture._repr_png_().startswith(b'\x89PNG')


OUTSIDE_A_KERNEL = """
import sys, torch
from IPython.core.interactiveshell import InteractiveShell
from helpers import cmp
t = torch.randn(6, 5, requires_grad=True)
(t * torch.randn(6, 5)).sum().backward()
cmp('t', -t.grad, t)
shell = InteractiveShell.instance()
shell.user_ns.update(cmp=cmp, t=t)
shell.run_cell("cmp('t', t.grad.T.clone(), t)")
print('matplotlib imported:', 'matplotlib' in sys.modules)
"""


def test_outside_a_kernel_cmp_prints_its_text_and_never_imports_matplotlib():
    """A script, a terminal, or the grader's IPython shell (no kernel) pay nothing for pictures."""
    run = subprocess.run([sys.executable, '-c', OUTSIDE_A_KERNEL], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert run.stdout.count('hint:') == 2 and 'sign is flipped' in run.stdout and 'shape WRONG' in run.stdout
    assert 'matplotlib imported: False' in run.stdout, run.stdout + run.stderr


def test_in_a_real_kernel_a_wrong_table_ends_in_one_image_and_a_right_one_in_none(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in [
        'import torch\nfrom helpers import cmp\n'
        't = torch.randn(5, 4, requires_grad=True)\nv = torch.randn(3, requires_grad=True)\n'
        '(t * torch.randn(5, 4)).sum().backward()\n(v * torch.randn(3)).sum().backward()',
        "cmp('t', t.grad.clone(), t)\ncmp('v', v.grad.clone(), v)",
        "cmp('t', t.grad.clone(), t)\ncmp('t', -t.grad, t)\ncmp('t', 2 * t.grad, t)\ncmp('v', 2 * v.grad, v)",
        "cmp('v', 2 * v.grad, v)\nprint('a cell after')",
    ]]
    right, wrong, after = execute(nb, cwd=tmp_path).cells[1:]

    def images(c):
        return [o for o in c.outputs if 'image/png' in o.get('data', {})]
    assert images(right) == [] and images(after) == []
    [image] = images(wrong)
    assert wrong.outputs[-1] is image  # under the whole table
    assert image.data['text/plain'] == "<picture of dt (5, 4): -1 times PyTorch's everywhere: a sign is flipped>"
    text = ''.join(o.get('text', '') for o in wrong.outputs)
    assert text.count('hint:') == 3 and 'a missing 1/2' in text


def test_the_package_helpers_still_gives_every_name_the_kit_imports_from_it():
    """helpers became a package for the picture; `from helpers import ...` keeps working in the
    notebooks, checks/, grading/, tools/ and tests/."""
    import re

    import helpers
    sources = [p for folder in ['nbsrc', 'checks', 'grading', 'tools', 'tests'] for p in (ROOT / folder).rglob('*.py')]
    names = {name.strip() for p in sources
             for found in re.findall(r'^\s*from helpers import ([\w, ]+)', p.read_text(), re.M)
             for name in found.split(',')}
    assert {'cmp', 'diagnose', 'forward_atoms', 'SEED', 'BN_EPS'} <= names
    assert [name for name in sorted(names) if not hasattr(helpers, name)] == []
