"""Comparing your gradient with PyTorch's. `cmp` prints one line per gradient and a hint
under a wrong one; `mistake` names what looks wrong, in a few words for a picture's title
and in a sentence for the hint; `numerical_grad` checks a gradient without autograd.
In a Jupyter kernel the first wrong gradient of two or more dimensions in a cell is also
pictured under the cell's lines (picture.py)."""
import sys

import torch

# Tolerances, one home for each: float32 on a notebook's own batch (cmp's "approximate" and its
# hints), float64 on the fresh batches of the visible and hidden checks.
RTOL32, ATOL32 = 1e-5, 1e-7
RTOL64, ATOL64 = 1e-6, 1e-10


def diagnose(dt, ref, name='d?', rtol=RTOL32, atol=ATOL32):
    """None if dt matches ref to the tolerance, else one sentence saying what looks wrong."""
    found = mistake(dt, ref, name, rtol, atol)
    return found[1] if found else None


def mistake(dt, ref, name='d?', rtol=RTOL32, atol=ATOL32):
    """None if dt matches ref to the tolerance, else (caption, hint): a few words for the
    picture's title and one sentence, both naming the same pattern.
    Every hint below is given only where the same rtol and atol call dt wrong."""
    if dt is None:
        return 'None', f'{name} is None: the cell never assigned it, or the function forgot to return it.'
    if not isinstance(dt, torch.Tensor):
        return 'not a tensor', f'{name} is a {type(dt).__name__}, not a tensor.'
    if dt.shape != ref.shape:
        return _shape_mistake(dt, ref, name)
    if not torch.isfinite(dt).all():
        return ('NaN or inf (black)',
                f'{name} has NaN or inf in it: look for a division by zero or an exp that overflowed.')
    dt = dt.to(ref.dtype)
    if torch.allclose(dt, ref, rtol=rtol, atol=atol):
        return None
    if not dt.any():
        return 'all zeros', f'{name} is all zeros: nothing was ever written into it, or it was multiplied by a zero.'
    if dt.dim() == 2 and dt.shape[0] == dt.shape[1] and torch.allclose(dt.T, ref, rtol=rtol, atol=atol):
        return 'transposed', f'{name} is transposed: check the order of the matrix product (or use .T).'
    ratio = (dt * ref).sum() / (ref * ref).sum()
    if torch.allclose(dt, ratio * ref, rtol=10 * rtol, atol=atol):
        caption, words = _ratio_words(ratio.item())
        return caption, f'{name} has the right direction but is {words}.'
    wrong = ~torch.isclose(dt, ref, rtol=rtol, atol=atol)
    worst = torch.unravel_index((dt - ref).abs().argmax(), dt.shape)
    count = f'{wrong.sum().item()} of {wrong.numel()} entries'
    where = f'{name} differs from PyTorch in {count}, most at index {tuple(int(i) for i in worst)}.'
    if dt.dim() >= 2 and _whole_rows_off(wrong.flatten(1), ref.flatten(1)):
        return ('whole rows off: a repeated index',
                where + ' Whole rows are off while other rows are right: rows read more than once '
                '(a repeated index, as in C[Xb]) need the sum of all their gradients. An indexed '
                '`+=`, as in dC[Xb] += demb, keeps only one of them; index_add_ (or a loop over '
                'the examples) adds them all.')
    if dt.dim() >= 2 and _striped(dt.flatten(1), ref.flatten(1), rtol, atol):
        return ('stripes: a sum over the wrong dimension?',
                where + ' The difference is one number per row plus one per column (stripes): '
                'something broadcast across the batch or the features is off, such as a sum over '
                'the wrong dimension or a path through a sum or mean left out.')
    return (f'{count} off',
            where + ' Check the local derivative, and where a value fans out to several uses, '
            'sum the gradients of all of them.')


def _whole_rows_off(wrong, ref):
    """Whether the wrong entries fill whole rows (most of each row) while some rows with a
    gradient in them are right: the mark of gradients lost for repeated indices."""
    off = wrong.any(1)
    right_rows = ~off & (ref != 0).any(1)
    return bool(off.any() and right_rows.any() and (wrong[off].float().mean(1) > 0.5).all())


def _striped(dt, ref, rtol, atol):
    """Whether dt - ref is a number per row plus a number per column: what a term broadcast
    over a dimension leaves when it is wrong (a sum over the wrong dimension, a lost path)."""
    if min(dt.shape) < 2:
        return False
    diff = dt - ref
    rows = diff.mean(1, keepdim=True)
    cols = diff.mean(0, keepdim=True) - diff.mean()
    return torch.allclose(dt, ref + rows + cols, rtol=10 * rtol, atol=atol)


def _shape_mistake(dt, ref, name):
    mine, want = tuple(dt.shape), tuple(ref.shape)
    hint = f'{name} has shape {mine} but should have {want}'
    if len(mine) == len(want):
        dims = [d for d in range(len(mine)) if mine[d] != want[d]]
        if all(want[d] == 1 for d in dims):
            dim = dims[0] if len(dims) == 1 else tuple(dims)
            return f'sum over dim {dim} with keepdim=True', hint + f': sum over dim {dim} with keepdim=True.'
        if all(mine[d] == 1 for d in dims):
            return 'broadcast it out', hint + (
                ': a sum forward is a copy backward; every element it summed gets the '
                'gradient, so broadcast it out (for example times torch.ones_like(x)).')
        if len(mine) == 2 and mine == want[::-1]:
            return 'transposed', hint + ': it looks transposed, check the order of the matrix product (or use .T).'
        summed = [d for d in dims if mine[d] == 1]
        meant = [d for d in dims if want[d] == 1]
        if summed and meant and len(summed) + len(meant) == len(dims):
            return 'summed over the wrong dimension', hint + (
                f': summed over the wrong dimension, sum over dim {_dims(meant)} with keepdim=True, '
                f'not over dim {_dims(summed)}.')
    if len(mine) == len(want) + 1:
        for d in range(len(mine)):
            if mine[:d] + mine[d + 1:] == want:
                return f'sum over dim {d} (keepdim=False)', hint + f': sum over dim {d} (keepdim=False).'
    if len(mine) + 1 == len(want) and 1 in want:
        return 'a dimension went missing', hint + ': a dimension went missing; sum with keepdim=True (or .view it back).'
    if dt.numel() == ref.numel():
        return f'.view({want})', hint + f': same number of elements, so .view({want}) may be what you meant.'
    return 'wrong shape', hint + '.'


def _dims(dims):
    return dims[0] if len(dims) == 1 else tuple(dims)


def _ratio_words(r):
    """(caption, words) for a gradient that is r times PyTorch's."""
    if abs(r + 1) < 1e-3:
        return ("-1 times PyTorch's everywhere: a sign is flipped", "-1 times PyTorch's: a sign is flipped")
    for n in range(3, 4097):
        if abs(r - (n - 1) / n) < 1e-5:
            return (f"{n - 1}/{n} = (n-1)/n times PyTorch's everywhere: Bessel's correction",
                    f'{n - 1}/{n} = (n-1)/n times PyTorch\'s: that is Bessel\'s correction, '
                    'the batch variance divides by n-1, not n')
        if abs(r - n / (n - 1)) < 1e-5:
            return (f"{n}/{n - 1} = n/(n-1) times PyTorch's everywhere",
                    f'{n}/{n - 1} = n/(n-1) times PyTorch\'s: divide by n where you divided by n-1')
    for k in range(2, 4097):
        if abs(r - k) < 1e-4 * k:
            return (f"{k} times PyTorch's everywhere: a missing 1/{k}",
                    f'{k} times PyTorch\'s: a mean divides by its count (a missing 1/{k})')
        if abs(r - 1 / k) < 1e-4 / k:
            return (f"1/{k} times PyTorch's everywhere",
                    f'1/{k} times PyTorch\'s: a sum, or a division by {k} too many?')
    return f"{r:.4g} times PyTorch's everywhere", f'{r:.4g} times PyTorch\'s'


def cmp(name, dt, t):
    """One line comparing your gradient dt with PyTorch's t.grad, and a hint when they differ.
    In a Jupyter kernel, a picture of the cell's first wrong gradient of two or more
    dimensions follows the cell's lines."""
    ref = t.grad
    if ref is None:
        print(f'{name:15s} | PyTorch has no gradient for it: run the forward and loss.backward() cell first')
        return
    if dt is None:
        print(f'{name:15s} | not written yet (still None)')
        return
    ok_shape = isinstance(dt, torch.Tensor) and dt.shape == ref.shape
    exact = ok_shape and torch.equal(dt.to(ref.dtype), ref)
    approx = ok_shape and torch.allclose(dt.to(ref.dtype), ref, rtol=RTOL32, atol=ATOL32)
    maxdiff = f'{(dt - ref).abs().max().item():.1e}' if ok_shape else '   -   '
    print(f'{name:15s} | exact: {exact!s:5} | approximate: {approx!s:5} | maxdiff: {maxdiff} '
          f'| shape {"ok" if ok_shape else "WRONG"}')
    found = mistake(dt, ref, 'd' + name, rtol=RTOL32, atol=ATOL32)
    if found and not approx:
        print(f'{"":15s}   hint: {found[1]}')
        if ref.dim() >= 2 and isinstance(dt, torch.Tensor):
            _remember('d' + name, dt, ref, found[0])


# ---------------------------------------------------------------- the picture, in a kernel only

first_wrong = None  # (name, dt, ref, caption) of the running cell's first wrong gradient to picture


def _kernel():
    """IPython's shell when cmp runs in a Jupyter kernel, else None: a terminal, a script,
    the grader's shell (no kernel) make no picture and never import matplotlib."""
    ipython = sys.modules.get('IPython')
    shell = ipython.get_ipython() if ipython else None
    return shell if getattr(shell, 'kernel', None) is not None else None


def _remember(name, dt, ref, caption):
    global first_wrong
    shell = _kernel()
    if shell is None or first_wrong is not None:
        return
    first_wrong = (name, dt.detach().clone(), ref.detach().clone(), caption)
    if show_first_wrong not in shell.events.callbacks['post_run_cell']:
        shell.events.register('post_run_cell', show_first_wrong)


def show_first_wrong(result=None):
    """After a cell ran (IPython's post_run_cell event): its first wrong gradient's picture,
    once, under everything the cell printed."""
    global first_wrong
    if first_wrong is None:
        return
    from IPython.display import display

    from helpers.picture import Picture
    name, dt, ref, caption = first_wrong
    first_wrong = None
    display(Picture(name, dt, ref, caption))


# ---------------------------------------------------------------- an independent check

def numerical_grad(f, x, dout, eps=1e-6):
    """dL/dx by central differences, where L = (f(x) * dout).sum(). Work in float64:
    x is perturbed one entry at a time, so keep x small."""
    x = x.detach().clone().to(torch.float64)
    dout = dout.to(torch.float64)
    grad = torch.zeros_like(x)
    flat, gflat = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        up = (f(x) * dout).sum().item()
        flat[i] = old - eps
        down = (f(x) * dout).sum().item()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad
