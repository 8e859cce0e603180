"""Hidden tests of notebook 1: each stage's function on fresh batches and widths."""
import torch

from checks.core import check_cases
from helpers import forward_atoms, init_params

CASES = [dict(n=32, n_hidden=64, seed=1), dict(n=5, n_hidden=7, seed=2),
         dict(n=2, n_hidden=3, seed=3), dict(n=100, n_hidden=20, seed=4)]

ATOMS = ['emb', 'embcat', 'hprebn', 'bnmeani', 'bndiff', 'bndiff2', 'bnvar', 'bnvar_inv', 'bnraw',
         'hpreact', 'h', 'logits', 'logit_maxes', 'norm_logits', 'counts', 'counts_sum',
         'counts_sum_inv', 'probs', 'logprobs']
PARAMS = ['C', 'W1', 'b1', 'W2', 'b2', 'bngain', 'bnbias']


def forward_backward(n, n_hidden, seed, vocab_size=27, n_embd=10, block_size=3):
    """The lecture's chunked forward pass in float64 on a random batch, and autograd's
    backward: every value by its name, every gradient by 'd' + its name."""
    g = torch.Generator().manual_seed(seed)
    params = init_params(vocab_size, n_embd, n_hidden, block_size, g=g, dtype=torch.float64)
    Xb = torch.randint(0, vocab_size, (n, block_size), generator=g)
    Yb = torch.randint(0, vocab_size, (n,), generator=g)
    atoms = forward_atoms(params, Xb, Yb)
    atoms['loss'].backward()
    named = dict(zip(PARAMS, params)) | {k: atoms[k] for k in ATOMS}
    out = {k: v.detach() for k, v in named.items()}
    out.update({'d' + k: v.grad for k, v in named.items()})
    out.update(Xb=Xb, Yb=Yb, loss=atoms['loss'].detach())
    return out


STAGES = {
    1: (['Yb', 'logits', 'logit_maxes', 'norm_logits', 'counts', 'counts_sum', 'counts_sum_inv',
         'probs', 'logprobs'],
        ['dlogprobs', 'dprobs', 'dcounts_sum_inv', 'dcounts_sum', 'dcounts', 'dnorm_logits',
         'dlogit_maxes', 'dlogits']),
    2: (['dlogits', 'h', 'W2'], ['dh', 'dW2', 'db2', 'dhpreact']),
    3: (['dhpreact', 'bngain', 'bnraw', 'bndiff', 'bnvar', 'bnvar_inv'],
        ['dbngain', 'dbnbias', 'dbnraw', 'dbnvar_inv', 'dbnvar', 'dbndiff2', 'dbndiff',
         'dbnmeani', 'dhprebn']),
    4: (['dhprebn', 'embcat', 'W1', 'emb', 'Xb', 'C'], ['dembcat', 'dW1', 'db1', 'demb', 'dC']),
}
NAMES = {1: 'stage 1 (cross-entropy)', 2: 'stage 2 (second layer and tanh)',
         3: 'stage 3 (batchnorm)', 4: 'stage 4 (first layer and embedding)'}


def check_stage(stage, fn):
    """The hidden test of one stage: fn on four fresh batches (n = 32, 5, 2, 100)."""
    inputs, outputs = STAGES[stage]
    check_cases(fn, CASES, forward_backward, inputs, outputs, NAMES[stage])
