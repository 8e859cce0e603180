"""Checks of notebook 3: each step of the batchnorm derivation, on the notebook's batch
(visible) and on fresh float64 batches whose features have very different scales (hidden).
When a wrong answer matches a classic mistake, the message names the mistake."""
import torch

from checks.core import ATOL, RTOL, GradingError, call_student, passed
from helpers import diagnose, forward_atoms, init_params

EPS = 1e-5  # the batchnorm epsilon of forward_atoms

# batch sizes 2, 3, 5, 32 and 100, several widths and seeds
CASES = [dict(n=32, width=64, seed=1), dict(n=2, width=5, seed=2), dict(n=3, width=4, seed=3),
         dict(n=5, width=7, seed=4), dict(n=100, width=20, seed=5), dict(n=32, width=10, seed=6)]

# step: (what it computes, the function's arguments, what it returns)
STEPS = {
    1: ('dL/dx-hat (dbnraw)', ['dhpreact', 'bngain'], 'dbnraw'),
    2: ('dL/dsigma^2 (dbnvar)', ['dbnraw', 'bndiff', 'bnvar'], 'dbnvar'),
    3: ('dL/dmu (dbnmeani)', ['dbnraw', 'dbnvar', 'bndiff', 'bnvar'], 'dbnmeani'),
    4: ('dL/dx through three paths (dhprebn)', ['dbnraw', 'dbnvar', 'dbnmeani', 'bndiff', 'bnvar'], 'dhprebn'),
    5: ('dL/dx in one line (dhprebn)', ['dhpreact', 'bngain', 'bnvar_inv', 'bnraw'], 'dhprebn'),
}


def batchnorm_values(atoms, bngain):
    """The batchnorm's values and PyTorch's gradients, by the names the steps use, from a
    forward_atoms dict after loss.backward()."""
    v = {k: atoms[k].detach() for k in ['bndiff', 'bnvar', 'bnvar_inv', 'bnraw']}
    v['bngain'] = bngain.detach()
    v.update({'d' + k: atoms[k].grad for k in ['hpreact', 'bnraw', 'bnvar', 'bnmeani', 'hprebn']})
    return v


def fresh_batchnorm(n, width, seed, spread=3):
    """The network in float64 on a random batch, with the first layer's columns scaled by
    10**-spread ... 10**spread, so that batchnorm sees features whose variances range
    from about 1e-6 (below the epsilon) to 1e6."""
    g = torch.Generator().manual_seed(seed)
    params = init_params(n_hidden=width, g=g, dtype=torch.float64)
    C, W1, b1, W2, b2, bngain, bnbias = params
    exponents = torch.linspace(-spread, spread, width, dtype=torch.float64)
    scales = 10.0 ** exponents[torch.randperm(width, generator=g)]
    with torch.no_grad():
        W1 *= scales
        b1 *= scales
    Xb = torch.randint(0, C.shape[0], (n, 3), generator=g)
    Yb = torch.randint(0, C.shape[0], (n,), generator=g)
    atoms = forward_atoms(params, Xb, Yb)
    atoms['loss'].backward()
    return batchnorm_values(atoms, bngain)


# ---------------------------------------------------------------- classic mistakes

def three_paths(v, n, bessel=True, sigma_path=True):
    """dL/dx from dL/dx-hat, dL/dsigma^2 and dL/dmu, right or with a classic mistake."""
    dx = v['dbnraw'] * (v['bnvar'] + EPS)**-0.5 + v['dbnmeani'] / n
    if sigma_path:
        dx = dx + v['dbnvar'] * 2 * v['bndiff'] / (n - 1 if bessel else n)
    return dx


def one_line(v, n, bessel=True, sigma_path=True):
    """dL/dx from dL/dy in one expression, right or with a classic mistake."""
    dy, xhat = v['dhpreact'], v['bnraw']
    bracket = n * dy - dy.sum(0, keepdim=True)
    if sigma_path:
        bracket = bracket - (n / (n - 1) if bessel else 1) * xhat * (dy * xhat).sum(0, keepdim=True)
    return v['bngain'] * v['bnvar_inv'] / n * bracket


def known_mistake(step, got, v, rtol, atol):
    """A sentence naming the classic mistake that `got` matches, or None."""
    ref = v['dhprebn']
    if step not in (4, 5) or not isinstance(got, torch.Tensor) or got.shape != ref.shape:
        return None
    n = ref.shape[0]
    formula = three_paths if step == 4 else one_line
    suspects = [
        (formula(v, n, bessel=False),
         'it matches the formula with 1/n where the variance has 1/(n-1). sigma^2 divides by n-1 '
         '(Bessel\'s correction), so its derivative with respect to x_i does too.'),
        (formula(v, n, sigma_path=False),
         'it matches the formula without the sigma^2 path. x_i reaches the loss through x-hat_i, '
         'mu AND sigma^2: add the sigma^2 term.'),
    ]
    if n != 32:
        suspects.append((formula(v, 32),
                         f'it matches the formula with n = 32 on this batch of {n}: the notebook\'s '
                         'batch size leaked into your function. Read n from a tensor\'s shape inside it.'))
    for wrong, why in suspects:
        if torch.allclose(got.to(wrong.dtype), wrong, rtol=rtol, atol=atol):
            return why
    return None


def problem(step, got, v, rtol, atol):
    """None if the step's answer `got` is right for the values v, else what is wrong."""
    output = STEPS[step][2]
    wrong = diagnose(got, v[output], output, rtol=rtol, atol=atol)
    if wrong is None:
        return None
    why = known_mistake(step, got, v, rtol, atol)
    return f'{output} is wrong: {why}' if why else wrong


# ---------------------------------------------------------------- the checks

def _run(step, fn, v, where, rtol, atol):
    title, inputs, output = STEPS[step]
    where = f'step {step}, {title}, {where}'
    got = call_student(fn, {k: v[k] for k in inputs}, [output], where)[output]
    wrong = problem(step, got, v, rtol, atol)
    if wrong:
        raise GradingError(f'{where}:\n  {wrong}')


def expect_step(step, fn, atoms, bngain):
    """The visible test: the step's function on the notebook's batch matches PyTorch."""
    _run(step, fn, batchnorm_values(atoms, bngain), "on the notebook's batch", rtol=1e-5, atol=1e-7)
    print(f'step {step}: {STEPS[step][2]} matches PyTorch on this batch')


def check_step(step, fn):
    """The hidden test: the step's function on every fresh batch of CASES, in float64."""
    for case in CASES:
        where = 'fresh batch with ' + ', '.join(f'{k}={v}' for k, v in case.items())
        _run(step, fn, fresh_batchnorm(**case), where, rtol=RTOL, atol=ATOL)
    passed(f'step {step} on {len(CASES)} fresh batches')
