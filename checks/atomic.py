"""Notebook 1's graded cells: each stage's function on fresh float64 batches of other sizes.
Stages 2 to 4 get a random upstream gradient, not one that came through the layers above:
batchnorm makes the column sums of dhprebn zero, so with the true upstream a db1 of zeros
would pass."""
import torch

from checks.core import FunctionSpec
from helpers import forward_atoms, init_params

PARAMS = ['C', 'W1', 'b1', 'W2', 'b2', 'bngain', 'bnbias']

# the notebook's sizes first, then other batch sizes, widths, vocabularies, embeddings, contexts
SIZES = [dict(n=32, n_hidden=64, vocab_size=27, n_embd=10, block_size=3),
         dict(n=5, n_hidden=7, vocab_size=11, n_embd=4, block_size=2),
         dict(n=2, n_hidden=3, vocab_size=5, n_embd=3, block_size=4),
         dict(n=100, n_hidden=20, vocab_size=40, n_embd=12, block_size=3)]
VISIBLE = dict(n=6, n_hidden=9, vocab_size=13, n_embd=5, block_size=2)


def make_network_case(g, n, n_hidden, vocab_size, n_embd, block_size, upstream=None, read_once=False):
    """A random float64 network and batch, every value of the chunked forward pass by name,
    and, for `upstream` (a value's name), a random gradient flowing into it. With `read_once`,
    some row of C is read exactly once, so that a dC losing repeated reads shows right rows too."""
    params = [p.detach() for p in init_params(vocab_size, n_embd, n_hidden, block_size, g=g, dtype=torch.float64)]
    Xb = torch.randint(0, vocab_size, (n, block_size), generator=g)
    while read_once and not (torch.bincount(Xb.flatten()) == 1).any():
        Xb = torch.randint(0, vocab_size, (n, block_size), generator=g)
    Yb = torch.randint(0, vocab_size, (n,), generator=g)
    with torch.no_grad():
        atoms = forward_atoms(params, Xb, Yb)
    case = dict(atoms, **dict(zip(PARAMS, params)), parameters=params, Xb=Xb, Yb=Yb)
    if upstream:
        case['d' + upstream] = torch.randn(atoms[upstream].shape, generator=g, dtype=torch.float64) / n
    return case


def network_reference(case, upstream, names):
    """PyTorch's gradient of every name in `names` ('d' + a value or parameter), by autograd
    through the chunked forward pass: from the loss, or from case['d' + upstream] into upstream."""
    leaves = [p.clone().requires_grad_() for p in case['parameters']]
    with torch.enable_grad():
        atoms = forward_atoms(leaves, case['Xb'], case['Yb'])
        target = atoms['loss'] if upstream is None else (atoms[upstream] * case['d' + upstream]).sum()
        target.backward()
    grads = dict(zip(PARAMS, leaves)) | atoms
    return {name: grads[name[1:]].grad for name in names}


def stage(gid, title, answer, args, returns, upstream):
    return FunctionSpec(gid, title, answer, args, returns, SIZES, VISIBLE,
                        make=lambda g, **size: make_network_case(g, upstream=upstream, read_once='dC' in returns,
                                                                 **size),
                        reference=lambda case: network_reference(case, upstream, returns))


SPECS = [
    stage('test_stage1', 'stage 1 (cross-entropy)', 'backprop_cross_entropy',
          ['Yb', 'logits', 'logit_maxes', 'norm_logits', 'counts', 'counts_sum', 'counts_sum_inv', 'probs',
           'logprobs'],
          ['dlogprobs', 'dprobs', 'dcounts_sum_inv', 'dcounts_sum', 'dcounts', 'dnorm_logits', 'dlogit_maxes',
           'dlogits'], None),
    stage('test_stage2', 'stage 2 (second layer and tanh)', 'backprop_layer2',
          ['dlogits', 'h', 'W2'], ['dh', 'dW2', 'db2', 'dhpreact'], 'logits'),
    stage('test_stage3', 'stage 3 (batchnorm)', 'backprop_batchnorm',
          ['dhpreact', 'bngain', 'bnraw', 'bndiff', 'bnvar', 'bnvar_inv'],
          ['dbngain', 'dbnbias', 'dbnraw', 'dbnvar_inv', 'dbnvar', 'dbndiff2', 'dbndiff', 'dbnmeani', 'dhprebn'],
          'hpreact'),
    stage('test_stage4', 'stage 4 (first layer and embedding)', 'backprop_layer1',
          ['dhprebn', 'embcat', 'W1', 'emb', 'Xb', 'C'], ['dembcat', 'dW1', 'db1', 'demb', 'dC'], 'hprebn'),
]
