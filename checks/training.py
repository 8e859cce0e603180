"""Notebook 4's graded cells: the whole backward pass, the first training steps, a training
step without autograd (other learning rates), and the loss the trained network reaches,
measured by the grader with the grader's own number of steps."""
import contextlib
import functools
import io
import math
import os
import warnings

import torch
import torch.nn.functional as F

from checks.core import (MAX_TEXT, FunctionSpec, GradingError, Spec, autograd_off, call, describe_sizes,
                         judge_values, plain)
from helpers import ATOL64, BN_EPS, RTOL64, SEED, init_params, read_words, split_dataset, vocabulary

PARAMS = ['C', 'W1', 'b1', 'W2', 'b2', 'bngain', 'bnbias']
GRADS = ['d' + p for p in PARAMS]
BACKWARD_ORDER = ['db2', 'dW2', 'dbngain', 'dbnbias', 'db1', 'dW1', 'dC']  # as the backward pass meets them
SAVED = ['embcat', 'bnraw', 'bnvar_inv', 'h', 'probs']
# the notebook's sizes, then other batch sizes, widths, vocabularies, embeddings and contexts
SIZES = [dict(n=32, n_hidden=200, vocab_size=27, n_embd=10, block_size=3),
         dict(n=5, n_hidden=7, vocab_size=11, n_embd=4, block_size=2),
         dict(n=2, n_hidden=3, vocab_size=5, n_embd=3, block_size=4),
         dict(n=100, n_hidden=20, vocab_size=40, n_embd=12, block_size=3)]
VISIBLE = dict(n=6, n_hidden=9, vocab_size=13, n_embd=5, block_size=2)
LEARNING_RATES = [0.1, 0.05, 0.3, 0.01]
FIRST_STEPS = 20
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
    """Notebook 4's forward pass (tests/test_training.py proves its locked cell computes the
    same): the loss and the values its backward pass needs."""
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    n = Xb.shape[0]
    embcat = C[Xb].view(n, -1)
    hprebn = embcat @ W1 + b1
    bndiff = hprebn - hprebn.mean(0, keepdim=True)
    bnvar_inv = ((bndiff**2).sum(0, keepdim=True) / (n - 1) + BN_EPS)**-0.5
    bnraw = bndiff * bnvar_inv
    h = torch.tanh(bngain * bnraw + bnbias)
    probs = F.softmax(h @ W2 + b2, 1)
    loss = -probs[torch.arange(n), Yb].log().mean()
    return loss, dict(embcat=embcat, bnraw=bnraw, bnvar_inv=bnvar_inv, h=h, probs=probs)


def autograd_reference(parameters, Xb, Yb):
    """The loss, the saved forward values and PyTorch's seven gradients, all detached."""
    leaves = [p.detach().clone().requires_grad_() for p in parameters]
    with torch.enable_grad():
        loss, saved = forward(leaves, Xb, Yb)
        loss.backward()
    return (loss.detach(), {k: v.detach() for k, v in saved.items()},
            {'d' + name: p.grad for name, p in zip(PARAMS, leaves)})


def fresh_parameters(g, n_hidden, vocab_size, n_embd, block_size):
    return [p.detach() for p in init_params(vocab_size, n_embd, n_hidden, block_size, g=g, dtype=torch.float64)]


def fresh_batch(g, n, vocab_size, block_size):
    return torch.randint(0, vocab_size, (n, block_size), generator=g), torch.randint(0, vocab_size, (n,), generator=g)


def make_backward_case(g, n, n_hidden, vocab_size, n_embd, block_size):
    parameters = fresh_parameters(g, n_hidden, vocab_size, n_embd, block_size)
    Xb, Yb = fresh_batch(g, n, vocab_size, block_size)
    with torch.no_grad():
        _, saved = forward(parameters, Xb, Yb)
    return dict(saved, parameters=parameters, Xb=Xb, Yb=Yb)


def backward_reference(case):
    return autograd_reference(case['parameters'], case['Xb'], case['Yb'])[2]


# ---------------------------------------------------------------- the first steps of training

class FirstSteps(Spec):
    """test_first_steps: the student's backward trains a fresh network for a few steps from the
    grader's parameters and batches; at every step its gradients must be autograd's on the
    parameters it reached, and every update p - lr * dp."""
    gid, title, answer = 'test_first_steps', 'the first training steps', 'backward'

    def cases(self, seed, visible=False, steps=FIRST_STEPS):
        g = torch.Generator().manual_seed(seed)
        out = []
        for size in [VISIBLE] if visible else SIZES[:3]:
            k = 3 if visible else steps
            parameters = fresh_parameters(g, size['n_hidden'], size['vocab_size'], size['n_embd'], size['block_size'])
            batches = [fresh_batch(g, size['n'], size['vocab_size'], size['block_size']) for _ in range(k)]
            out.append(dict(parameters=parameters, Xbs=torch.stack([x for x, _ in batches]),
                            Ybs=torch.stack([y for _, y in batches]), lr=0.1, sizes=size))
        return out

    def run(self, backward, inputs):
        try:
            parameters = [p.clone() for p in inputs['parameters']]
            reached, steps = [], []
            for Xb, Yb in zip(inputs['Xbs'], inputs['Ybs']):
                with autograd_off():
                    _, saved = forward(parameters, Xb, Yb)
                reached.append([plain(p) for p in parameters])
                out = call(backward, [parameters, Xb, Yb, *saved.values()], ['parameters', 'Xb', 'Yb', *SAVED], GRADS)
                steps.append(out)
                grads = [out.get('values', {}).get(name) for name in GRADS]
                if not all(isinstance(d, torch.Tensor) and d.shape == p.shape for d, p in zip(grads, parameters)):
                    break
                parameters = [p - inputs['lr'] * d.to(p.dtype) for p, d in zip(parameters, grads)]
            return {'parameters': reached, 'steps': steps}
        except Exception as e:
            return {'error': f'{type(e).__name__}: {e}'[:MAX_TEXT]}

    def verdict(self, inputs, outputs):
        if not isinstance(outputs, dict) or 'error' in outputs:
            return judge_values(GRADS, {}, outputs, inputs['sizes'])
        reached, steps = outputs.get('parameters'), outputs.get('steps')
        if not isinstance(reached, list) or not isinstance(steps, list) or not steps or len(reached) != len(steps):
            return 'it handed in nothing readable'
        expected = inputs['parameters']
        for i, (Xb, Yb) in enumerate(zip(inputs['Xbs'], inputs['Ybs'])):
            if i >= len(steps):
                return f'only {len(steps)} of {len(inputs["Xbs"])} training steps ran'
            params = reached[i]
            if not (isinstance(params, list) and len(params) == 7 and all(
                    isinstance(p, torch.Tensor) and p.shape == e.shape and p.dtype == e.dtype for p, e in zip(params, expected))
                    and all(torch.allclose(p, e, rtol=RTOL64, atol=ATOL64) for p, e in zip(params, expected))):
                return f'training step {i} did not start from p - lr * dp of the step before'
            want = autograd_reference(params, Xb, Yb)[2]
            wrong = judge_values(BACKWARD_ORDER, want, steps[i], inputs['sizes'], first_wrong=True)
            if wrong:
                return f'at training step {i} of a fresh network: {wrong}'
            expected = [p - inputs['lr'] * steps[i]['values'][d] for p, d in zip(params, GRADS)]
        return None


# ---------------------------------------------------------------- a step without autograd

class NoGradStep(Spec):
    """test_no_grad_step: train_step(parameters, Xb, Yb, lr) with autograd off updates every
    parameter in place to p - lr * dp, for other learning rates too, and returns the loss."""
    gid, title, answer = 'test_no_grad_step', 'train_step', 'train_step'

    def cases(self, seed, visible=False):
        g = torch.Generator().manual_seed(seed)
        sizes = [dict(VISIBLE, lr=0.05)] if visible else [dict(s, lr=lr) for s, lr in zip(SIZES, LEARNING_RATES)]
        out = []
        for size in sizes:
            case = make_backward_case(g, **{k: v for k, v in size.items() if k != 'lr'})
            out.append(dict(parameters=case['parameters'], Xb=case['Xb'], Yb=case['Yb'], lr=size['lr'], sizes=size))
        return out

    def run(self, train_step, inputs):
        try:
            parameters = [p.clone() for p in inputs['parameters']]
            out = call(train_step, [parameters, inputs['Xb'], inputs['Yb'], inputs['lr']],
                       ['parameters', 'Xb', 'Yb', 'lr'], ['loss'], copy=False)
            out['parameters'] = [plain(p) for p in parameters]
            return out
        except Exception as e:
            return {'error': f'{type(e).__name__}: {e}'[:MAX_TEXT]}

    def verdict(self, inputs, outputs):
        sizes, lr = inputs['sizes'], inputs['lr']
        if not isinstance(outputs, dict) or 'error' in outputs:
            return judge_values(['loss'], {}, outputs, sizes)
        loss, _, grads = autograd_reference(inputs['parameters'], inputs['Xb'], inputs['Yb'])
        after = outputs.get('parameters')
        if not isinstance(after, list) or len(after) != 7:
            return 'it handed in nothing readable'
        if (outputs.get('values') or {}).get('loss') is None and all(
                isinstance(p, torch.Tensor) and p.shape == p0.shape and torch.equal(p, p0)
                for p, p0 in zip(after, inputs['parameters'])):
            return 'not written yet (it changes no parameter and returns None)'
        problems, unchanged, slow = [], [], []
        for name, p, p0 in zip(PARAMS, after, inputs['parameters']):
            want = p0 - lr * grads['d' + name]
            if not isinstance(p, torch.Tensor) or p.shape != p0.shape:
                problems.append(f'{name} is no longer a tensor of shape {tuple(p0.shape)}')
            elif torch.allclose(p.to(want.dtype), want, rtol=RTOL64, atol=ATOL64):
                continue
            elif torch.equal(p, p0):
                unchanged.append(name)
            elif lr != 0.1 and torch.allclose(p.to(want.dtype), p0 - 0.1 * grads['d' + name], rtol=RTOL64, atol=ATOL64):
                slow.append(name)
            else:
                problems.append(f'{name} after the step differs from {name} - lr * d{name} '
                                f'(max difference {(p.to(want.dtype) - want).abs().max().item():.1e})')
        if slow:
            problems.append(f'{", ".join(slow)} moved by 0.1 times the gradient, but this step\'s lr is {lr}: '
                            'use the lr argument, not a number typed in')
        if unchanged:
            problems.append(f'{", ".join(unchanged)} did not change: update the tensors in `parameters` '
                            'themselves, in place (p -= lr * grad)')
        got = (outputs.get('values') or {}).get('loss')
        try:
            loss_ok = abs(float(got) - loss.item()) <= 1e-6 * max(1.0, loss.item())
        except (TypeError, ValueError, RuntimeError):
            loss_ok = False
        if not loss_ok:
            problems.append(f'it returned {str(got)[:60]} as the loss; the batch\'s loss before the '
                            f'update is {loss.item():.6f}')
        if problems:
            return f'on a fresh float64 batch with {describe_sizes(sizes)}: ' + '; '.join(problems)
        return None

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


def expect_losses(train_loss, val_loss, steps, quiet=False):
    """The visible check: the notebook's train and val loss are under the bar for `steps`."""
    bar_train, bar_val = loss_bar(steps)
    if not (train_loss <= bar_train and val_loss <= bar_val):
        raise GradingError(f'after {steps} steps the loss is train {train_loss:.4f}, val {val_loss:.4f}, '
                           f'above the bar of train {bar_train:.2f}, val {bar_val:.2f} (the worst of five runs of '
                           f'a correct solution, plus {MARGIN}). Check the gradients above, the learning '
                           'rate and the sign of the update.')
    if not quiet:
        print(f'after {steps} steps: train {train_loss:.4f} <= {bar_train:.2f}, val {val_loss:.4f} <= {bar_val:.2f}')


@functools.lru_cache(maxsize=1)
def splits(block_size=3):
    """The train, val and test sets, built once per process (the grader and the judge never
    change them; what student code is given are rows indexed out of them)."""
    words = read_words()
    return split_dataset(words, vocabulary(words)[0], block_size)


def split_losses(parameters, block_size=3, rows=8192):
    """Train and val loss of the parameters, batchnorm calibrated on the whole training set;
    `rows` examples at a time (the whole set at once makes intermediates of 150 MB, several
    times slower)."""
    (Xtr, Ytr), (Xdev, Ydev), _ = splits(block_size)
    C, W1, b1, W2, b2, bngain, bnbias = [p.detach().float() for p in parameters]

    def hprebn(X, i):
        return torch.addmm(b1, C[X[i:i + rows]].view(-1, W1.shape[0]), W1)
    with torch.no_grad():
        n = Xtr.shape[0]
        bnmean = sum(hprebn(Xtr, i).sum(0, keepdim=True) for i in range(0, n, rows)) / n
        bnvar = sum(((hprebn(Xtr, i) - bnmean)**2).sum(0, keepdim=True) for i in range(0, n, rows)) / (n - 1)
        scale = bngain * (bnvar + BN_EPS)**-0.5  # batchnorm with fixed statistics is x * scale + shift
        shift = bnbias - bnmean * scale

        def loss(X, Y):
            return sum(F.cross_entropy(torch.addmm(b2, torch.tanh(hprebn(X, i) * scale + shift), W2), Y[i:i + rows],
                                       reduction='sum').item() for i in range(0, X.shape[0], rows)) / X.shape[0]
        return loss(Xtr, Ytr), loss(Xdev, Ydev)


def train(train_step, steps, seed):
    """Notebook 4's training, with the student's `train_step`: a fresh network and the
    lecture's batches of 32 from one generator seeded with `seed`, lr 0.1 then 0.01 from
    half-way, under no_grad. The seven trained parameters."""
    (Xtr, Ytr), _, _ = splits(3)
    g = torch.Generator().manual_seed(seed)
    parameters = init_params(len(vocabulary(read_words())[1]), 10, 200, 3, g=g)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter('ignore')
        for i in range(steps):
            ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
            if train_step(parameters, Xtr[ix], Ytr[ix], 0.1 if i < steps // 2 else 0.01) is None:
                raise NotImplementedError
    return parameters


class Trained(Spec):
    """test_trained: a fresh network trained with the student's train_step for the grader's
    number of steps (inputs['steps']), never the kernel's; the grader measures the parameters
    it reaches, on the train and val sets, against the bar for that many steps."""
    gid, title, answer = 'test_trained', 'the trained network', 'train_step'

    def cases(self, seed, visible=False, steps=None):
        return [dict(steps=steps if steps is not None else steps_from_env(), seed=SEED, sizes={})]

    def run(self, train_step, inputs):
        if not callable(train_step):
            return {'error': f'train_step should be a function, got {type(train_step).__name__}'}
        try:
            parameters = train(train_step, int(inputs['steps']), int(inputs['seed']))
        except NotImplementedError:
            return {'error': 'not written yet (train_step returns None, or raises NotImplementedError)'}
        except (Exception, SystemExit) as e:
            return {'error': f'training with train_step raised {type(e).__name__}: {e}'[:MAX_TEXT]}
        return {'values': {'parameters': [plain(p) for p in parameters]}}

    def verdict(self, inputs, outputs):
        if not isinstance(outputs, dict) or 'error' in outputs:
            return str(outputs.get('error') if isinstance(outputs, dict) else 'it handed in nothing readable')[:MAX_TEXT]
        parameters = (outputs.get('values') or {}).get('parameters')
        if not isinstance(parameters, list) or len(parameters) != 7 \
                or not all(isinstance(p, torch.Tensor) and p.is_floating_point() for p in parameters):
            return 'it handed in nothing readable as the seven trained parameters'
        if not all(torch.isfinite(p).all() for p in parameters):
            return 'the trained parameters hold NaN or inf: the training diverged'
        try:
            expect_losses(*split_losses(parameters), int(inputs['steps']), quiet=True)
        except GradingError as e:
            return str(e)
        return None


def expect_first_steps(mismatches, steps_checked, steps):
    """The visible check: the notebook's first `steps` steps all ran and left no mismatch;
    otherwise the first gradient to go wrong, in backward order, is named."""
    if steps_checked < steps:
        raise GradingError(f'only {steps_checked} of the first {steps} steps ran: the error above stopped '
                           'the others (is backward written yet?)')
    if mismatches:
        first = min(i for i, _ in mismatches)
        at_first = [hint for i, hint in mismatches if i == first]
        rank = {name: k for k, name in enumerate(BACKWARD_ORDER)}
        at_first.sort(key=lambda hint: rank.get(hint.split()[0], len(rank)))
        lead = at_first[0].split()[0]
        shown = '\n  '.join(f'step {i}: {hint}' for i, hint in mismatches[:5])
        more = f'\n  ... and {len(mismatches) - 5} more' if len(mismatches) > 5 else ''
        raise GradingError(f'{len(mismatches)} gradient(s) differed from PyTorch\'s during the first {steps} steps. '
                           f'The first to go wrong, in backward order, is {lead} at step {first}: fix it first, '
                           f'the others may follow from it.\n  {shown}{more}')
    print(f'all seven gradients matched PyTorch\'s at each of the first {steps} steps')


SPECS = [
    FunctionSpec('test_backward', 'backward', 'backward', ['parameters', 'Xb', 'Yb', *SAVED], GRADS, SIZES, VISIBLE,
                 make_backward_case, backward_reference, order=BACKWARD_ORDER),
    FirstSteps(),
    NoGradStep(),
    Trained(),
]
