"""The network: its seven parameters drawn from one seeded generator, notebook 1's batch,
and the forward pass cut into the named atoms the notebooks backpropagate through."""
import torch

from helpers.data import read_words, split_dataset, vocabulary

SEED = 2147483647
BN_EPS = 1e-5  # the batchnorm epsilon: the notebooks, the checks and the grader all use this one


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

