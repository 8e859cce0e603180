"""How long one training step takes: autograd, the lecture's manual step, and notebook 4's.

    python tools/bench.py [--steps N] [--rounds R] [--compile]

All three train the same network (n_hidden 200, from the same initial parameters) on the
same minibatches of 32, in this one process, on one thread. They take turns in short
rounds, so that a busy machine slows all of them alike; each figure is the median over the
rounds of the mean time per step. `make bench` runs it.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from helpers import BN_EPS, SEED, init_params, read_words, split_dataset, vocabulary

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tools'))
from nbbuild import parse  # noqa: E402


def notebook_step():
    """train_step, with the forward and backward it calls, exactly as the solution of
    notebook 4 defines them (taken from nbsrc/04_manual_training.py)."""
    namespace = {'torch': torch, 'F': F}
    for _, words, source in parse((ROOT / 'nbsrc' / '04_manual_training.py').read_text()):
        if {'id=forward', 'id=backward', 'id=train_step'} & set(words):
            exec(source, namespace)
    return namespace['train_step']


def compiled_step():
    """The solution's forward and backward as one pure function (the update returns new
    tensors instead of changing them in place), compiled with torch.compile."""
    namespace = {'torch': torch, 'F': F}
    for _, words, source in parse((ROOT / 'nbsrc' / '04_manual_training.py').read_text()):
        if {'id=forward', 'id=backward'} & set(words):
            exec(source, namespace)
    forward, backward = namespace['forward'], namespace['backward']

    @torch.compile
    def loss_and_update(C, W1, b1, W2, b2, bngain, bnbias, Xb, Yb, lr):
        parameters = [C, W1, b1, W2, b2, bngain, bnbias]
        loss, saved = forward(parameters, Xb, Yb)
        grads = backward(parameters, Xb, Yb, *saved)
        return loss, [p - lr * grad for p, grad in zip(parameters, grads)]

    def step(parameters, Xb, Yb, lr):
        loss, parameters[:] = loss_and_update(*parameters, Xb, Yb, lr)
        return loss
    return step


def autograd_step(parameters, Xb, Yb, lr):
    """The usual way: the same network, F.cross_entropy, loss.backward(). It gets the same
    cheap variance as the solution (Tensor.var is several times slower here)."""
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    n = Xb.shape[0]
    hprebn = C[Xb].view(n, -1) @ W1 + b1
    bndiff = hprebn - hprebn.mean(0, keepdim=True)
    bnraw = bndiff * ((bndiff**2).sum(0, keepdim=True) / (n - 1) + BN_EPS)**-0.5
    h = torch.tanh(bngain * bnraw + bnbias)
    loss = F.cross_entropy(h @ W2 + b2, Yb)
    for p in parameters:
        p.grad = None
    loss.backward()
    with torch.no_grad():
        for p in parameters:
            p.add_(p.grad, alpha=-lr)
    return loss


def lecture_step(parameters, Xb, Yb, lr):
    """The lecture's exercise 4 as first written: its forward pass, the fused formulas, and
    a Python double loop that adds each character's gradient into dC."""
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    n = Xb.shape[0]
    emb = C[Xb]
    embcat = emb.view(n, -1)
    hprebn = embcat @ W1 + b1
    bnmean = hprebn.mean(0, keepdim=True)
    bnvar = hprebn.var(0, keepdim=True, unbiased=True)
    bnvar_inv = (bnvar + BN_EPS)**-0.5
    bnraw = (hprebn - bnmean) * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2
    loss = F.cross_entropy(logits, Yb)
    dlogits = F.softmax(logits, 1)
    dlogits[range(n), Yb] -= 1
    dlogits /= n
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    dhpreact = (1.0 - h**2) * dh
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
    dembcat = dhprebn @ W1.T
    dW1 = embcat.T @ dhprebn
    db1 = dhprebn.sum(0)
    demb = dembcat.view(emb.shape)
    dC = torch.zeros_like(C)
    for k in range(Xb.shape[0]):
        for j in range(Xb.shape[1]):
            dC[Xb[k, j]] += demb[k, j]
    for p, grad in zip(parameters, [dC, dW1, db1, dW2, db2, dbngain, dbnbias]):
        p.data += -lr * grad
    return loss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--steps', type=int, default=50, help='steps per round (default 50)')
    ap.add_argument('--rounds', type=int, default=31, help='rounds, each method in turn (default 31)')
    ap.add_argument('--compile', action='store_true',
                    help='also time the solution compiled with torch.compile (the first call takes a while)')
    args = ap.parse_args()
    if args.steps < 1 or args.rounds < 1:
        ap.error('--steps and --rounds must be at least 1')
    torch.set_num_threads(1)

    words = read_words()
    stoi, _ = vocabulary(words)
    (Xtr, Ytr), _, _ = split_dataset(words, stoi)
    g = torch.Generator().manual_seed(SEED)
    start = init_params(27, 10, 200, 3, g=g)
    ix = torch.randint(0, Xtr.shape[0], (args.rounds + 1, args.steps, 32), generator=g)
    batches = [[(Xtr[i], Ytr[i]) for i in round_ix] for round_ix in ix]  # round 0 warms up

    methods = {
        'autograd': ('forward + loss.backward()', autograd_step, True),
        'lecture loop': ('manual, Python loop for dC', lecture_step, False),
        'solution': ("notebook 4's train_step", notebook_step(), False),
    }
    if args.compile:  # its first call, in the warm-up round, compiles it
        methods['compiled'] = ('the solution, torch.compile\'d', compiled_step(), False)
    models = {name: [p.detach().clone().requires_grad_() for p in start] for name in methods}
    times = {name: [] for name in methods}
    for r, round_batches in enumerate(batches):
        order = list(methods)
        for name in order[r % len(order):] + order[:r % len(order)]:  # take turns going first
            _, step, grad = methods[name]
            with torch.set_grad_enabled(grad):
                t0 = time.perf_counter()
                for Xb, Yb in round_batches:
                    step(models[name], Xb, Yb, 0.1)
                seconds = time.perf_counter() - t0
            if r > 0:
                times[name].append(seconds / args.steps * 1e6)

    us = {name: statistics.median(t) for name, t in times.items()}
    total = args.steps * (args.rounds + 1)
    print(f'one training step: n_hidden 200, batch 32, 1 thread, torch {torch.__version__}; '
          f'median of {args.rounds} rounds of {args.steps} steps')
    for name, (what, _, _) in methods.items():
        drift = max((p - q).abs().max().item() for p, q in zip(models[name], models['autograd']))
        same = '' if name == 'autograd' else f'; after {total} steps, parameters within {drift:.0e} of autograd\'s'
        print(f'{name:13s} {us[name]:8.0f} us per step   ({what}{same})')
    if args.compile:
        print(f'compiled vs solution: {us["solution"] / us["compiled"]:.2f}x')
    print(f'speedup vs autograd: {us["autograd"] / us["solution"]:.2f}x')
    print(f'speedup vs lecture loop: {us["lecture loop"] / us["solution"]:.2f}x')


if __name__ == '__main__':
    main()
