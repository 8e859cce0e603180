"""Notebook 3's graded cells: each step of the batchnorm derivation on fresh float64 batches
whose features have very different scales, from a random upstream gradient. When a wrong
answer matches a classic mistake, the verdict names the mistake."""
import torch

from checks.atomic import make_network_case, network_reference
from checks.core import FunctionSpec, GradingError
from helpers import ATOL32, ATOL64, BN_EPS, RTOL32, RTOL64, diagnose, forward_atoms

# batch sizes 2, 3, 5, 32 and 100, several widths
SIZES = [dict(n=32, width=64), dict(n=2, width=5), dict(n=3, width=4), dict(n=5, width=7),
         dict(n=100, width=20), dict(n=32, width=10)]
VISIBLE = dict(n=6, width=9)
GRADS = ['dbnraw', 'dbnvar', 'dbnmeani', 'dhprebn']

# step: (grade id, what it computes, its function, the function's arguments, what it returns)
STEPS = {
    1: ('test_step1', 'dL/dx-hat (dbnraw)', 'backprop_bnraw', ['dhpreact', 'bngain'], 'dbnraw'),
    2: ('test_step2', 'dL/dsigma^2 (dbnvar)', 'backprop_bnvar', ['dbnraw', 'bndiff', 'bnvar'], 'dbnvar'),
    3: ('test_step3', 'dL/dmu (dbnmeani)', 'backprop_bnmeani', ['dbnraw', 'dbnvar', 'bndiff', 'bnvar'], 'dbnmeani'),
    4: ('test_step4', 'dL/dx through three paths (dhprebn)', 'backprop_hprebn',
        ['dbnraw', 'dbnvar', 'dbnmeani', 'bndiff', 'bnvar'], 'dhprebn'),
    5: ('test_step5', 'dL/dx in one line (dhprebn)', 'backprop_batchnorm_fused',
        ['dhpreact', 'bngain', 'bnvar_inv', 'bnraw'], 'dhprebn'),
}


def make_batchnorm_case(g, n, width, spread=3):
    """The network in float64 on a random batch, with the first layer's columns scaled by
    10**-spread ... 10**spread (variances from about 1e-6, below the epsilon, to 1e6), a
    random upstream gradient dhpreact, and the true dbnraw, dbnvar, dbnmeani it gives."""
    case = make_network_case(g, n, width, 27, 10, 3, upstream='hpreact')
    exponents = torch.linspace(-spread, spread, width, dtype=torch.float64)
    scales = 10.0 ** exponents[torch.randperm(width, generator=g)]
    C, W1, b1, W2, b2, bngain, bnbias = case['parameters']
    params = [C, W1 * scales, b1 * scales, W2, b2, bngain, bnbias]
    with torch.no_grad():
        atoms = forward_atoms(params, case['Xb'], case['Yb'])
    case.update(atoms, parameters=params, W1=params[1], b1=params[2])
    case.update({k: v for k, v in network_reference(case, 'hpreact', GRADS).items() if k != 'dhprebn'})
    return case


def batchnorm_values(case):
    """What the classic-mistake detector needs from a case, with PyTorch's gradients."""
    v = {k: case[k] for k in ['hprebn', 'bngain', 'dhpreact']}
    return v | network_reference(case, 'hpreact', GRADS)


# ---------------------------------------------------------------- classic mistakes
# A classic mistake is a derivation that treats one piece of the forward pass wrongly. Each
# one below is that piece changed in the forward pass, and autograd through it gives the
# gradient the mistaken derivation reaches. Every value stays what it is: only the path the
# gradient takes back to x changes.

def with_grad_of(value, other):
    """`value` in the forward pass, whose gradient flows as if it were `other`."""
    return value.detach() + other - other.detach()


def mistaken_dx(v, mistake):
    """dL/dx by autograd through a batchnorm y = gain * (x - mean) / sqrt(var + eps), made
    with a classic mistake:
      'bessel'      the variance differentiated as if it divided by n, not n - 1;
      'sigma-path'  the variance held constant: no gradient reaches x through sigma^2;
      'n=32'        the mean and variance differentiated as if the batch had 32 rows."""
    x = v['hprebn'].detach().to(torch.float64).requires_grad_()
    gain, dy = v['bngain'].detach().to(torch.float64), v['dhpreact'].to(torch.float64)
    n = x.shape[0]
    with torch.enable_grad():
        mean = x.sum(0, keepdim=True) / n
        if mistake == 'n=32':
            mean = with_grad_of(mean, x.sum(0, keepdim=True) / 32)
        square = ((x - mean)**2).sum(0, keepdim=True)
        var = square / (n - 1)
        if mistake == 'bessel':
            var = with_grad_of(var, square / n)
        if mistake == 'n=32':
            var = with_grad_of(var, square / 31)
        if mistake == 'sigma-path':
            var = var.detach()
        y = gain * (x - mean) * (var + BN_EPS)**-0.5
        (y * dy).sum().backward()
    return x.grad


def known_mistake(step, got, v, rtol, atol):
    """A sentence naming the classic mistake that `got` matches, or None."""
    ref = v['dhprebn']
    if step not in (4, 5) or not isinstance(got, torch.Tensor) or got.shape != ref.shape:
        return None
    n = ref.shape[0]
    suspects = [
        ('bessel', 'it matches the formula with 1/n where the variance has 1/(n-1). sigma^2 divides by n-1 '
                   '(Bessel\'s correction), so its derivative with respect to x_i does too.'),
        ('sigma-path', 'it matches the formula without the sigma^2 path. x_i reaches the loss through x-hat_i, '
                       'mu AND sigma^2: add the sigma^2 term.'),
    ]
    if n != 32:
        suspects.append(('n=32', f'it matches the formula with n = 32 on this batch of {n}: the notebook\'s '
                                 'batch size leaked into your function. Read n from a tensor\'s shape inside it.'))
    for mistake, why in suspects:
        wrong = mistaken_dx(v, mistake)
        if torch.allclose(got.to(wrong.dtype), wrong, rtol=rtol, atol=atol):
            return why
    return None


def step_spec(step):
    gid, what, answer, args, output = STEPS[step]
    return FunctionSpec(gid, f'step {step}, {what}', answer, args, [output], SIZES, VISIBLE, make_batchnorm_case,
                        reference=lambda case: {output: network_reference(case, 'hpreact', GRADS)[output]},
                        mistake=lambda case, name, got: known_mistake(step, got, batchnorm_values(case),
                                                                      RTOL64, ATOL64))


SPECS = [step_spec(step) for step in STEPS]


# ---------------------------------------------------------------- on the notebook's own batch

def notebook_values(atoms, bngain):
    """The notebook's batchnorm values and PyTorch's gradients (after loss.backward())."""
    v = {k: atoms[k].detach() for k in ['hprebn', 'bndiff', 'bnvar', 'bnvar_inv', 'bnraw']}
    v['bngain'] = bngain.detach()
    v.update({'d' + k: atoms[k].grad for k in ['hpreact', 'bnraw', 'bnvar', 'bnmeani', 'hprebn']})
    return v


def expect_step(step, fn, atoms, bngain):
    """The visible test on the notebook's batch: the step's function matches PyTorch, and
    a wrong answer that matches a classic mistake is named."""
    _, what, _, args, output = STEPS[step]
    v = notebook_values(atoms, bngain)
    try:
        with torch.no_grad():
            got = fn(*[v[k] for k in args])
    except NotImplementedError:
        raise GradingError(f'step {step}: not written yet') from None
    if got is None:
        raise GradingError(f'step {step}: {output} is not written yet (still None)')
    wrong = diagnose(got, v[output], output, rtol=RTOL32, atol=ATOL32)
    if wrong:
        why = known_mistake(step, got, v, rtol=1e-4, atol=1e-6)
        raise GradingError(f'step {step}, {what}, on the notebook\'s batch:\n  '
                           + (f'{output} is wrong: {why}' if why else wrong))
    print(f'step {step}: {output} matches PyTorch on this batch')


def name_mistake(step, got, atoms, bngain):
    """Under a cmp line: say which classic mistake a wrong answer matches, if any."""
    why = known_mistake(step, got, notebook_values(atoms, bngain), rtol=1e-4, atol=1e-6)
    if why:
        print(f'{"":15s}   {why}')
