"""What every notebook shares: the names data, the network's parameters, `cmp`,
and a finite-difference gradient check. The graders' checks live in `checks/`."""
import random
from pathlib import Path

import torch

NAMES_TXT = Path(__file__).resolve().parent / 'data' / 'names.txt'
SEED = 2147483647
BN_EPS = 1e-5  # the batchnorm epsilon: the notebooks, the checks and the grader all use this one
# Tolerances, one home for each: float32 on a notebook's own batch (cmp's "approximate" and its
# hints), float64 on the fresh batches of the visible and hidden checks.
RTOL32, ATOL32 = 1e-5, 1e-7
RTOL64, ATOL64 = 1e-6, 1e-10


# ---------------------------------------------------------------- data

def read_words(path=NAMES_TXT):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f'names file not found: {path}. The kit ships data/names.txt; '
            'restore it with `git checkout data/names.txt` or rebuild it with '
            "`pip install -e '.[data]' && python data/build_names.py`.")
    return path.read_text().split()


def vocabulary(words):
    """stoi and itos for '.' (index 0, the start and end token) and the letters used."""
    chars = sorted(set(''.join(words)))
    stoi = {ch: i + 1 for i, ch in enumerate(chars)}
    stoi['.'] = 0
    itos = {i: ch for ch, i in stoi.items()}
    return stoi, itos


def build_dataset(words, stoi, block_size=3):
    """Every (context of block_size characters, next character) pair in the words."""
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + '.':
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)


def split_dataset(words, stoi, block_size=3, seed=42):
    """Shuffle the words with `seed` and cut them 80/10/10 into train, val and test."""
    words = list(words)
    random.Random(seed).shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return (build_dataset(words[:n1], stoi, block_size),
            build_dataset(words[n1:n2], stoi, block_size),
            build_dataset(words[n2:], stoi, block_size))


# ---------------------------------------------------------------- the network

def init_params(vocab_size=27, n_embd=10, n_hidden=64, block_size=3, g=None, dtype=None):
    """C, W1, b1, W2, b2, bngain, bnbias, all drawn from the generator g (seeded with
    SEED when not given).
    Biases and batchnorm parameters are small random numbers, not zeros and ones,
    so a wrong gradient cannot hide behind a zero."""
    g = g if g is not None else torch.Generator().manual_seed(SEED)
    fan_in = n_embd * block_size
    C = torch.randn((vocab_size, n_embd), generator=g)
    W1 = torch.randn((fan_in, n_hidden), generator=g) * (5 / 3) / fan_in**0.5
    b1 = torch.randn(n_hidden, generator=g) * 0.1
    W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
    b2 = torch.randn(vocab_size, generator=g) * 0.1
    bngain = torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0
    bnbias = torch.randn((1, n_hidden), generator=g) * 0.1
    params = [C, W1, b1, W2, b2, bngain, bnbias]
    if dtype is not None:
        params = [p.to(dtype) for p in params]
    for p in params:
        p.requires_grad = True
    return params


def notebook1_batch(batch_size=32, n_embd=10, n_hidden=64, block_size=3):
    """Notebook 1's parameters and batch, drawn from the seeded generator in the same order,
    for the notebooks that pick up where it left off: (parameters, Xb, Yb, itos)."""
    words = read_words()
    stoi, itos = vocabulary(words)
    (Xtr, Ytr), _, _ = split_dataset(words, stoi, block_size)
    g = torch.Generator().manual_seed(SEED)
    parameters = init_params(len(itos), n_embd, n_hidden, block_size, g=g)
    ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
    return parameters, Xtr[ix], Ytr[ix], itos


def forward_atoms(params, Xb, Yb):
    """The lecture's forward pass cut into named steps (notebook 1 shows it line by line).
    Returns {name: tensor} for every intermediate and 'loss'; each intermediate keeps its
    .grad, so after d['loss'].backward() PyTorch's gradient of each is there for cmp."""
    C, W1, b1, W2, b2, bngain, bnbias = params
    n = Xb.shape[0]
    d = {}
    d['emb'] = C[Xb]
    d['embcat'] = d['emb'].view(n, -1)
    d['hprebn'] = d['embcat'] @ W1 + b1
    d['bnmeani'] = 1 / n * d['hprebn'].sum(0, keepdim=True)
    d['bndiff'] = d['hprebn'] - d['bnmeani']
    d['bndiff2'] = d['bndiff']**2
    d['bnvar'] = 1 / (n - 1) * d['bndiff2'].sum(0, keepdim=True)
    d['bnvar_inv'] = (d['bnvar'] + BN_EPS)**-0.5
    d['bnraw'] = d['bndiff'] * d['bnvar_inv']
    d['hpreact'] = bngain * d['bnraw'] + bnbias
    d['h'] = torch.tanh(d['hpreact'])
    d['logits'] = d['h'] @ W2 + b2
    d['logit_maxes'] = d['logits'].max(1, keepdim=True).values
    d['norm_logits'] = d['logits'] - d['logit_maxes']
    d['counts'] = d['norm_logits'].exp()
    d['counts_sum'] = d['counts'].sum(1, keepdim=True)
    d['counts_sum_inv'] = d['counts_sum']**-1
    d['probs'] = d['counts'] * d['counts_sum_inv']
    d['logprobs'] = d['probs'].log()
    if torch.is_grad_enabled() and C.requires_grad:
        for t in d.values():
            t.retain_grad()
    d['loss'] = -d['logprobs'][torch.arange(n), Yb].mean()
    return d


# ---------------------------------------------------------------- comparing gradients

def diagnose(dt, ref, name='d?', rtol=RTOL32, atol=ATOL32):
    """None if dt matches ref to the tolerance, else one sentence saying what looks wrong.
    Every hint below is given only where the same rtol and atol call dt wrong."""
    if dt is None:
        return f'{name} is None: the cell never assigned it, or the function forgot to return it.'
    if not isinstance(dt, torch.Tensor):
        return f'{name} is a {type(dt).__name__}, not a tensor.'
    if dt.shape != ref.shape:
        return _shape_hint(dt, ref, name)
    if not torch.isfinite(dt).all():
        return f'{name} has NaN or inf in it: look for a division by zero or an exp that overflowed.'
    dt = dt.to(ref.dtype)
    if torch.allclose(dt, ref, rtol=rtol, atol=atol):
        return None
    if not dt.any():
        return f'{name} is all zeros: nothing was ever written into it, or it was multiplied by a zero.'
    if dt.dim() == 2 and dt.shape[0] == dt.shape[1] and torch.allclose(dt.T, ref, rtol=rtol, atol=atol):
        return f'{name} is transposed: check the order of the matrix product (or use .T).'
    ratio = (dt * ref).sum() / (ref * ref).sum()
    if torch.allclose(dt, ratio * ref, rtol=10 * rtol, atol=atol):
        return f'{name} has the right direction but is {_ratio_words(ratio.item())}.'
    wrong = ~torch.isclose(dt, ref, rtol=rtol, atol=atol)
    worst = torch.unravel_index((dt - ref).abs().argmax(), dt.shape)
    where = (f'{name} differs from PyTorch in {wrong.sum().item()} of {wrong.numel()} entries, '
             f'most at index {tuple(int(i) for i in worst)}.')
    if dt.dim() >= 2 and _whole_rows_off(wrong.flatten(1), ref.flatten(1)):
        return (where + ' Whole rows are off while other rows are right: rows read more than once '
                '(a repeated index, as in C[Xb]) need the sum of all their gradients. An indexed '
                '`+=`, as in dC[Xb] += demb, keeps only one of them; index_add_ (or a loop over '
                'the examples) adds them all.')
    return (where + ' Check the local derivative, and where a value fans out to several uses, '
            'sum the gradients of all of them.')


def _whole_rows_off(wrong, ref):
    """Whether the wrong entries fill whole rows (most of each row) while some rows with a
    gradient in them are right: the mark of gradients lost for repeated indices."""
    off = wrong.any(1)
    right_rows = ~off & (ref != 0).any(1)
    return bool(off.any() and right_rows.any() and (wrong[off].float().mean(1) > 0.5).all())


def _shape_hint(dt, ref, name):
    mine, want = tuple(dt.shape), tuple(ref.shape)
    hint = f'{name} has shape {mine} but should have {want}'
    if len(mine) == len(want):
        dims = [d for d in range(len(mine)) if mine[d] != want[d]]
        if all(want[d] == 1 for d in dims):
            return hint + f': sum over dim {dims[0] if len(dims) == 1 else tuple(dims)} with keepdim=True.'
        if all(mine[d] == 1 for d in dims):
            return hint + (': a sum forward is a copy backward; every element it summed gets the '
                           'gradient, so broadcast it out (for example times torch.ones_like(x)).')
        if len(mine) == 2 and mine == want[::-1]:
            return hint + ': it looks transposed, check the order of the matrix product (or use .T).'
    if len(mine) == len(want) + 1:
        for d in range(len(mine)):
            if mine[:d] + mine[d + 1:] == want:
                return hint + f': sum over dim {d} (keepdim=False).'
    if len(mine) + 1 == len(want) and 1 in want:
        return hint + ': a dimension went missing; sum with keepdim=True (or .view it back).'
    if dt.numel() == ref.numel():
        return hint + f': same number of elements, so .view({want}) may be what you meant.'
    return hint + '.'


def _ratio_words(r):
    if abs(r + 1) < 1e-3:
        return '-1 times PyTorch\'s: a sign is flipped'
    for n in range(3, 4097):
        if abs(r - (n - 1) / n) < 1e-5:
            return (f'{n - 1}/{n} = (n-1)/n times PyTorch\'s: that is Bessel\'s correction, '
                    'the batch variance divides by n-1, not n')
        if abs(r - n / (n - 1)) < 1e-5:
            return f'{n}/{n - 1} = n/(n-1) times PyTorch\'s: divide by n where you divided by n-1'
    for k in range(2, 4097):
        if abs(r - k) < 1e-4 * k:
            return f'{k} times PyTorch\'s: a mean divides by its count (a missing 1/{k})'
        if abs(r - 1 / k) < 1e-4 / k:
            return f'1/{k} times PyTorch\'s: a sum, or a division by {k} too many?'
    return f'{r:.4g} times PyTorch\'s'


def cmp(name, dt, t):
    """One line comparing your gradient dt with PyTorch's t.grad, and a hint when they differ."""
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
    hint = diagnose(dt, ref, 'd' + name, rtol=RTOL32, atol=ATOL32)
    if hint and not approx:
        print(f'{"":15s}   hint: {hint}')


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
