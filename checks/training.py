"""Hidden tests of notebook 4: the whole backward pass, the first training steps, a training
step without autograd, and the loss the trained network reaches."""
import math
import os

import torch
import torch.nn.functional as F

from checks.core import ATOL, RTOL, GradingError, call_student, compare, passed
from helpers import init_params, read_words, split_dataset, vocabulary

CASES = [dict(n=32, n_hidden=200, seed=1), dict(n=5, n_hidden=7, seed=2),
         dict(n=2, n_hidden=3, seed=3), dict(n=100, n_hidden=20, seed=4)]
PARAMS = ['C', 'W1', 'b1', 'W2', 'b2', 'bngain', 'bnbias']
GRADS = ['d' + p for p in PARAMS]
SAVED = ['embcat', 'bnraw', 'bnvar_inv', 'h', 'probs']
DEFAULT_STEPS = 200_000

# The bar the trained network must pass, by number of training steps (lr 0.1, then 0.01 from
# half-way). Measured: the solution notebook's training with five seeds (init and batches from
# SEED + 0..4), one thread, torch 2.13; the bar is the worst of the five plus 0.02, rounded up.
# (steps: (worst train, worst val) of the five runs)
MEASURED = {
    500: (2.5204, 2.5355),  # the five runs: train 2.4733..2.5204, val 2.4831..2.5355
    1_000: (2.4439, 2.4595),  # train 2.4085..2.4439, val 2.4191..2.4595
    2_000: (2.3756, 2.3926),  # train 2.3501..2.3756, val 2.3595..2.3926
    5_000: (2.2913, 2.3081),  # train 2.2795..2.2913, val 2.2908..2.3081
    10_000: (2.2387, 2.2552),  # train 2.2315..2.2387, val 2.2453..2.2552
    20_000: (2.1900, 2.2070),  # train 2.1837..2.1900, val 2.2010..2.2070
    50_000: (2.1323, 2.1591),  # train 2.1252..2.1323, val 2.1528..2.1591
    100_000: (2.0974, 2.1313),  # train 2.0908..2.0974, val 2.1257..2.1313
    200_000: (2.0726, 2.1130),  # train 2.0676..2.0726, val 2.1087..2.1130
}
MARGIN = 0.02


# ---------------------------------------------------------------- the reference

def forward(parameters, Xb, Yb):
    """The notebook's forward pass: the loss and the values its backward pass needs."""
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    n = Xb.shape[0]
    embcat = C[Xb].view(n, -1)
    hprebn = embcat @ W1 + b1
    bndiff = hprebn - hprebn.mean(0, keepdim=True)
    bnvar_inv = ((bndiff**2).sum(0, keepdim=True) / (n - 1) + 1e-5)**-0.5
    bnraw = bndiff * bnvar_inv
    h = torch.tanh(bngain * bnraw + bnbias)
    probs = F.softmax(h @ W2 + b2, 1)
    loss = -probs[torch.arange(n), Yb].log().mean()
    return loss, dict(embcat=embcat, bnraw=bnraw, bnvar_inv=bnvar_inv, h=h, probs=probs)


def fresh_model(n, n_hidden, seed, vocab_size=27, n_embd=10, block_size=3):
    """Float64 parameters from init_params, and a random batch, all from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    parameters = init_params(vocab_size, n_embd, n_hidden, block_size, g=g, dtype=torch.float64)
    Xb = torch.randint(0, vocab_size, (n, block_size), generator=g)
    Yb = torch.randint(0, vocab_size, (n,), generator=g)
    return parameters, Xb, Yb, g


def autograd_reference(parameters, Xb, Yb):
    """The loss, the saved forward values and PyTorch's seven gradients, all detached."""
    leaves = [p.detach().clone().requires_grad_() for p in parameters]
    with torch.enable_grad():
        loss, saved = forward(leaves, Xb, Yb)
        loss.backward()
    return (loss.detach(), {k: v.detach() for k, v in saved.items()},
            {'d' + name: p.grad for name, p in zip(PARAMS, leaves)})


def run_backward(backward, parameters, Xb, Yb, saved, where):
    inputs = dict(parameters=[p.detach().clone() for p in parameters], Xb=Xb, Yb=Yb, **saved)
    return call_student(backward, inputs, GRADS, where)


def label(case):
    return ', '.join(f'{k}={v}' for k, v in case.items())


# ---------------------------------------------------------------- the graded checks

def check_backward(backward, cases=CASES):
    """backward(parameters, Xb, Yb, embcat, bnraw, bnvar_inv, h, probs) returns PyTorch's
    seven gradients on fresh float64 batches, with autograd switched off."""
    for case in cases:
        parameters, Xb, Yb, _ = fresh_model(**case)
        _, saved, want = autograd_reference(parameters, Xb, Yb)
        where = f'backward, fresh batch with {label(case)}'
        compare(run_backward(backward, parameters, Xb, Yb, saved, where), want, where)
    passed(f'backward, all seven gradients, on {len(cases)} fresh batch{"es" if len(cases) > 1 else ""}')


def check_first_steps(backward, cases=CASES[:3], steps=20, lr=0.1):
    """Train a fresh float64 network for `steps` steps with backward's gradients; at every
    step they must match PyTorch's."""
    for case in cases:
        parameters, _, _, g = fresh_model(**case)
        vocab_size, block_size = parameters[0].shape[0], 3
        for i in range(steps):
            Xb = torch.randint(0, vocab_size, (case['n'], block_size), generator=g)
            Yb = torch.randint(0, vocab_size, (case['n'],), generator=g)
            _, saved, want = autograd_reference(parameters, Xb, Yb)
            where = f'training step {i} of a fresh network with {label(case)}'
            got = run_backward(backward, parameters, Xb, Yb, saved, where)
            compare(got, want, where)
            with torch.no_grad():
                for p, name in zip(parameters, GRADS):
                    p -= lr * got[name]
    passed(f'backward at each of {steps} training steps of {len(cases)} fresh networks')


def expect_first_steps(mismatches, steps_checked, steps):
    """The visible check: the notebook's first `steps` steps all ran and left no mismatch."""
    if steps_checked < steps:
        raise GradingError(f'only {steps_checked} of the first {steps} steps ran: the error above stopped '
                           'the others (is backward written yet?)')
    if mismatches:
        shown = '\n  '.join(f'step {i}: {hint}' for i, hint in mismatches[:5])
        more = f'\n  ... and {len(mismatches) - 5} more' if len(mismatches) > 5 else ''
        raise GradingError(f'{len(mismatches)} gradient(s) differed from PyTorch\'s during the first '
                           f'{steps} steps:\n  {shown}{more}')
    print(f'all seven gradients matched PyTorch\'s at each of the first {steps} steps')


def check_step(train_step, cases=CASES, lr=0.1):
    """train_step(parameters, Xb, Yb, lr) with autograd switched off updates every parameter
    in place to p - lr * dp and returns the batch's loss."""
    for case in cases:
        parameters, Xb, Yb, _ = fresh_model(**case)
        loss, _, grads = autograd_reference(parameters, Xb, Yb)
        want = [p.detach() - lr * grads['d' + name] for name, p in zip(PARAMS, parameters)]
        before = [p.detach().clone() for p in parameters]
        where = f'train_step, fresh batch with {label(case)}'
        got = call_student(train_step, dict(parameters=parameters, Xb=Xb, Yb=Yb, lr=lr), ['loss'], where)
        problems, unchanged = [], []
        for name, p, w, p0 in zip(PARAMS, parameters, want, before):
            p = p.detach()
            if torch.allclose(p, w, rtol=RTOL, atol=ATOL):
                continue
            if torch.equal(p, p0):
                unchanged.append(name)
            else:
                problems.append(f'{name} after the step differs from {name} - lr * d{name} '
                                f'(max difference {(p - w).abs().max().item():.1e})')
        if unchanged:
            problems.append(f'{", ".join(unchanged)} did not change: update the tensors in `parameters` '
                            'themselves, in place (p -= lr * grad)')
        try:
            loss_ok = abs(float(got['loss']) - loss.item()) <= 1e-6 * max(1.0, loss.item())
        except (TypeError, ValueError, RuntimeError):
            loss_ok = False
        if not loss_ok:
            problems.append(f'it returned {got["loss"]!r} as the loss; the batch\'s loss before the '
                            f'update is {loss.item():.6f}')
        if problems:
            raise GradingError(f'{where}:\n  ' + '\n  '.join(problems))
    passed(f'train_step without autograd on {len(cases)} fresh batch{"es" if len(cases) > 1 else ""}')


# ---------------------------------------------------------------- the trained network

def steps_from_env():
    """The number of training steps: BPN_STEPS if set, else the lecture's 200,000."""
    text = os.environ.get('BPN_STEPS', '').strip()
    if not text:
        return DEFAULT_STEPS
    try:
        steps = int(text.replace('_', ''))
    except ValueError:
        raise GradingError(f'BPN_STEPS={text!r} is not a whole number of training steps') from None
    if steps < min(MEASURED):
        raise GradingError(f'BPN_STEPS={steps}: the loss bar is measured from {min(MEASURED)} steps on; '
                           f'set BPN_STEPS to {min(MEASURED)} or more (the default is {DEFAULT_STEPS})')
    return steps


def loss_bar(steps):
    """(train, val) the trained network must stay under after `steps` steps: the bar of the
    largest measured step count not above `steps` (more steps only lower the loss)."""
    if steps < min(MEASURED):
        raise GradingError(f'{steps} steps is fewer than {min(MEASURED)}, the fewest the loss bar was measured for')
    train, val = MEASURED[max(s for s in MEASURED if s <= steps)]
    return math.ceil((train + MARGIN) * 100) / 100, math.ceil((val + MARGIN) * 100) / 100


def expect_losses(train_loss, val_loss, steps):
    """The visible check: the notebook's train and val loss are under the bar for `steps`."""
    bar_train, bar_val = loss_bar(steps)
    if not (train_loss <= bar_train and val_loss <= bar_val):
        raise GradingError(f'after {steps} steps the loss is train {train_loss:.4f}, val {val_loss:.4f}, '
                           f'above the bar of train {bar_train:.2f}, val {bar_val:.2f} (the worst of five runs of '
                           f'a correct solution, plus {MARGIN}). Check the gradients above, the learning '
                           'rate and the sign of the update.')
    print(f'after {steps} steps: train {train_loss:.4f} <= {bar_train:.2f}, val {val_loss:.4f} <= {bar_val:.2f}')


def split_losses(parameters, block_size=3):
    """Train and val loss of the parameters, batchnorm calibrated on the whole training set."""
    words = read_words()
    stoi, _ = vocabulary(words)
    (Xtr, Ytr), (Xdev, Ydev), _ = split_dataset(words, stoi, block_size)
    C, W1, b1, W2, b2, bngain, bnbias = [p.detach().float() for p in parameters]
    with torch.no_grad():
        hprebn = C[Xtr].view(Xtr.shape[0], -1) @ W1 + b1
        bnvar, bnmean = torch.var_mean(hprebn, 0, keepdim=True)
        scale = bngain * (bnvar + 1e-5)**-0.5  # batchnorm with fixed statistics is x * scale + shift
        shift = bnbias - bnmean * scale

        def loss(hpre, Y):
            return F.cross_entropy(torch.tanh(hpre * scale + shift) @ W2 + b2, Y).item()
        return loss(hprebn, Ytr), loss(C[Xdev].view(Xdev.shape[0], -1) @ W1 + b1, Ydev)


def check_trained(parameters):
    """The grader's own measurement of the trained network, against the bar for BPN_STEPS."""
    if not isinstance(parameters, (list, tuple)) or len(parameters) != 7 \
            or not all(isinstance(p, torch.Tensor) for p in parameters):
        raise GradingError('`parameters` should be the list of the seven trained tensors '
                           '[C, W1, b1, W2, b2, bngain, bnbias]')
    if not all(torch.isfinite(p).all() for p in parameters):
        raise GradingError('the trained parameters hold NaN or inf: the training diverged')
    steps = steps_from_env()
    expect_losses(*split_losses(parameters), steps)
    passed('the trained network, measured again by the grader')  # fixed text: the grader matches it
