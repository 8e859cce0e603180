# %% [markdown]
# # Backprop Ninja 1: backpropagate through every atom
#
# In the makemore lectures `loss.backward()` did the calculus for us. Here you do it
# yourself, for a real network: a character-level MLP that reads three letters of a name
# and predicts the fourth. Its forward pass is cut into small named steps, twenty
# intermediate tensors in all, and you write the gradient of the loss with respect to
# each of them and to each of the seven parameters, going from the loss back to the
# embedding table. PyTorch still computes its own gradients, but only so that `cmp` can
# tell you, line by line, whether yours agree.
#
# **How this notebook is graded.** You write four functions, one per stage of the
# backward pass. Each gets plain tensors (the forward values it needs and the gradient
# flowing in) and returns the gradients of its stage. The test cell after each stage
# checks your answer on this notebook's batch; the grader then runs the same function
# on fresh batches of other sizes (as small as 2, as large as 100) and other hidden
# widths, in float64, **with autograd switched off**. So write the math, not numbers:
# take sizes from the tensors' shapes, never type 32 or 64, and don't reach for `.grad`.
#
# | stage | from | to | points |
# |---|---|---|---|
# | 1 | `loss` | `dlogits` | 3 |
# | 2 | `dlogits` | `dhpreact` | 2 |
# | 3 | `dhpreact` | `dhprebn` | 3 |
# | 4 | `dhprebn` | `dC` | 2 |

# %% locked id=imports
import torch
import torch.nn.functional as F

from helpers import SEED, cmp, init_params, read_words, split_dataset, vocabulary
from checks.core import expect_fresh, expect_grads
from checks.handin import hand_in

# %% [markdown]
# ## The data
# About 32,000 US baby names from 2017, one per line. Every name becomes a handful of
# examples: three characters of context and the character that follows, with `.`
# padding the start and marking the end. The names are shuffled once (seed 42) and
# split 80/10/10 into training, validation and test sets.

# %% locked id=data
words = read_words()
stoi, itos = vocabulary(words)
vocab_size = len(itos)
block_size = 3
(Xtr, Ytr), (Xdev, Ydev), (Xte, Yte) = split_dataset(words, stoi, block_size)
print(f'{len(words)} names, vocabulary of {vocab_size}: {"".join(itos[i] for i in range(vocab_size))}')
print(f'examples: train {Xtr.shape[0]}, val {Xdev.shape[0]}, test {Xte.shape[0]}')

# %% [markdown]
# ## The network
# An embedding table `C` gives each character 10 numbers; the three embeddings of a
# context are concatenated (30 numbers), go through a linear layer of 64 neurons,
# batch normalization, tanh, and a second linear layer that gives 27 logits. Every random
# number comes from one seeded generator `g`, so your numbers match your neighbour's.
#
# The biases and the batchnorm gain and bias start as small random numbers instead of
# the usual zeros and ones. That is deliberate: with a zero in the right place, a wrong
# gradient formula can still produce the right numbers, and we want every mistake to show.

# %% locked id=params
n_embd, n_hidden = 10, 64
g = torch.Generator().manual_seed(SEED)
C, W1, b1, W2, b2, bngain, bnbias = parameters = init_params(vocab_size, n_embd, n_hidden, block_size, g=g)
print(f'{sum(p.nelement() for p in parameters)} parameters')

# %% [markdown]
# One minibatch of 32 examples is all we need: we will look at one forward and one
# backward pass through it very closely.

# %% locked id=batch
batch_size = 32
n = batch_size  # a shorter name for the formulas below
ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
Xb, Yb = Xtr[ix], Ytr[ix]

# %% [markdown]
# ## The forward pass, one atom at a time
# This is the usual forward pass written out in the smallest steps that still have
# names: the batchnorm mean and variance by hand, and the cross-entropy as max,
# subtract, exp, sum, divide, log and pick. The variance divides by $n-1$ (Bessel's
# correction), as the lecture does. Each intermediate keeps its gradient
# (`retain_grad`) so that `cmp` can compare yours with PyTorch's.

# %% locked id=forward
emb = C[Xb]                                    # (n, 3, 10) embed the characters
embcat = emb.view(emb.shape[0], -1)            # (n, 30)    concatenate the three
hprebn = embcat @ W1 + b1                      # (n, 64)    first linear layer
bnmeani = 1 / n * hprebn.sum(0, keepdim=True)  # (1, 64)    batch mean
bndiff = hprebn - bnmeani
bndiff2 = bndiff**2
bnvar = 1 / (n - 1) * bndiff2.sum(0, keepdim=True)  # (1, 64) batch variance, Bessel-corrected
bnvar_inv = (bnvar + 1e-5)**-0.5
bnraw = bndiff * bnvar_inv                     # (n, 64)    normalized
hpreact = bngain * bnraw + bnbias              # (n, 64)    scaled and shifted
h = torch.tanh(hpreact)                        # (n, 64)
logits = h @ W2 + b2                           # (n, 27)    second linear layer
logit_maxes = logits.max(1, keepdim=True).values
norm_logits = logits - logit_maxes             # subtract the max so exp cannot overflow
counts = norm_logits.exp()
counts_sum = counts.sum(1, keepdim=True)
counts_sum_inv = counts_sum**-1
probs = counts * counts_sum_inv                # softmax
logprobs = probs.log()
loss = -logprobs[range(n), Yb].mean()          # cross-entropy

for p in parameters:
    p.grad = None
for t in [logprobs, probs, counts, counts_sum, counts_sum_inv, norm_logits, logit_maxes, logits,
          h, hpreact, bnraw, bnvar_inv, bnvar, bndiff2, bndiff, hprebn, bnmeani, embcat, emb]:
    t.retain_grad()
loss.backward()
print(f'loss {loss.item():.4f}')

# %% [markdown]
# The loss is about $-\ln(1/27) \approx 3.30$: at initialization the network barely
# prefers any character over another, which is what we want.
#
# ## Stage 1: from the loss back to the logits
# Walk the cross-entropy backwards, one line at a time. For each intermediate $x$ you
# write $\frac{\partial L}{\partial x}$ as `dx`, a tensor with exactly the shape of `x`.
# Three things bite here:
#
# - **Only the picked entries matter.** `loss` is minus the mean of `n` entries of
#   `logprobs`, one per row (the label's). The other entries don't touch the loss, so
#   their gradient is zero.
# - **Broadcasting is copying, and copying is fan-out.** `probs = counts * counts_sum_inv`
#   multiplies a `(n, 27)` tensor by a `(n, 1)` one: each `counts_sum_inv[i]` is used 27
#   times. A value used several times receives the *sum* of the gradients of all its uses.
#   Sum over the copied dimension and keep it (`keepdim=True`) so the shape matches.
# - **A value can feed more than one line.** `counts` feeds `probs` directly and also
#   through `counts_sum`; `logits` feeds `norm_logits` directly and through
#   `logit_maxes`. Write the first contribution, then *add* (`+=`) the second.
#
# And the max: `logit_maxes[i]` is a copy of one entry of row `i` of `logits`, so its
# gradient flows back to that one entry (the argmax) and nowhere else.
#
# The function gets the forward values and must return the eight gradients in the order
# of its `return` line. `n` is the batch size, read from the tensors. Delete the
# `raise NotImplementedError()` line and write the gradients one at a time, rerunning the
# `cmp` cell as you go: the ones you haven't written yet are still `None`, and `cmp` says so.

# %% solution id=stage1
def backprop_cross_entropy(Yb, logits, logit_maxes, norm_logits, counts, counts_sum, counts_sum_inv,
                           probs, logprobs):
    n = logprobs.shape[0]
    dlogprobs = dprobs = dcounts_sum_inv = dcounts_sum = dcounts = dnorm_logits = dlogit_maxes = dlogits = None
    ### BEGIN SOLUTION
    # loss = -(1/n) * sum_i logprobs[i, Yb[i]]
    dlogprobs = torch.zeros_like(logprobs)
    dlogprobs[range(n), Yb] = -1.0 / n
    # d log(p) / dp = 1/p
    dprobs = dlogprobs / probs
    # probs = counts * counts_sum_inv, with counts_sum_inv copied along dim 1
    dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
    dcounts = counts_sum_inv * dprobs
    # counts_sum_inv = counts_sum ** -1
    dcounts_sum = -counts_sum**-2 * dcounts_sum_inv
    # counts_sum sums a row of counts: every count in the row gets its gradient
    dcounts += dcounts_sum
    # counts = exp(norm_logits): the derivative of exp is exp itself, which is counts
    dnorm_logits = counts * dcounts
    # norm_logits = logits - logit_maxes, logit_maxes copied along dim 1
    dlogits = dnorm_logits.clone()
    dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)
    # logit_maxes picks one entry per row: the gradient goes back to the argmax only
    dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
    ### END SOLUTION
    return dlogprobs, dprobs, dcounts_sum_inv, dcounts_sum, dcounts, dnorm_logits, dlogit_maxes, dlogits

# %% [markdown]
# Run your function on the batch and compare. `exact` means bit for bit, `approximate`
# means within float32 rounding; both should say `True`. When a line is wrong, the hint
# under it says what the mismatch looks like.

# %% locked id=run_stage1
with torch.no_grad():
    (dlogprobs, dprobs, dcounts_sum_inv, dcounts_sum, dcounts, dnorm_logits, dlogit_maxes,
     dlogits) = backprop_cross_entropy(Yb, logits, logit_maxes, norm_logits, counts, counts_sum,
                                       counts_sum_inv, probs, logprobs)
cmp('logprobs', dlogprobs, logprobs)
cmp('probs', dprobs, probs)
cmp('counts_sum_inv', dcounts_sum_inv, counts_sum_inv)
cmp('counts_sum', dcounts_sum, counts_sum)
cmp('counts', dcounts, counts)
cmp('norm_logits', dnorm_logits, norm_logits)
cmp('logit_maxes', dlogit_maxes, logit_maxes)
cmp('logits', dlogits, logits)

# %% tests id=test_stage1 points=3
# stage 1: your eight gradients match PyTorch's on this batch...
### BEGIN HIDDEN TESTS
hand_in('test_stage1', backprop_cross_entropy)  # graded outside this kernel, on fresh batches
### END HIDDEN TESTS
expect_grads(globals(), ['logprobs', 'probs', 'counts_sum_inv', 'counts_sum', 'counts',
                         'norm_logits', 'logit_maxes', 'logits'])
expect_fresh('test_stage1', backprop_cross_entropy)  # ...and on a fresh float64 batch of other sizes

# %% [markdown]
# Look at `dlogit_maxes`: it is tiny, around $10^{-9}$, not exactly zero. In exact
# arithmetic it *is* zero: subtracting the same number from every logit of a row leaves
# the softmax, and so the loss, unchanged. The max is there only to keep `exp` from
# overflowing, and its gradient is float rounding.
#
# ## Stage 2: the second layer and tanh
# `logits = h @ W2 + b2`. A matrix product's backward pass is again a matrix product;
# the quickest way to get it right is to write the one product whose shape comes out as
# the shape you need. `dh` must be `(n, 64)` and is built from `dlogits` `(n, 27)` and
# `W2` `(64, 27)`; `dW2` must be `(64, 27)` and is built from `h` and `dlogits`. The bias
# `b2` is added to every row, so it fans out `n` times: sum over the rows.
#
# Then the tanh. Its derivative is $1 - \tanh^2(x)$, and you already have
# $\tanh(x)$: it is `h`. Each stage starts from PyTorch's gradient of its input
# (`logits.grad` here), so a slip in stage 1 doesn't spill into stage 2.

# %% solution id=stage2
def backprop_layer2(dlogits, h, W2):
    dh = dW2 = db2 = dhpreact = None
    ### BEGIN SOLUTION
    # logits = h @ W2 + b2; shapes decide the order of each product
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    # h = tanh(hpreact), d tanh/dx = 1 - tanh^2 = 1 - h^2
    dhpreact = (1.0 - h**2) * dh
    ### END SOLUTION
    return dh, dW2, db2, dhpreact

# %% locked id=run_stage2
with torch.no_grad():
    dh, dW2, db2, dhpreact = backprop_layer2(logits.grad, h, W2)
cmp('h', dh, h)
cmp('W2', dW2, W2)
cmp('b2', db2, b2)
cmp('hpreact', dhpreact, hpreact)

# %% tests id=test_stage2 points=2
# stage 2: dh, dW2, db2 and dhpreact match PyTorch's on this batch...
### BEGIN HIDDEN TESTS
hand_in('test_stage2', backprop_layer2)  # graded outside this kernel, on fresh batches
### END HIDDEN TESTS
expect_grads(globals(), ['h', 'W2', 'b2', 'hpreact'])
expect_fresh('test_stage2', backprop_layer2)  # ...and on a fresh float64 batch of other sizes

# %% [markdown]
# `dhpreact` comes out *approximate*, not *exact*, even for a correct answer: PyTorch
# computes the tanh's backward pass in one fused kernel whose rounding differs from
# `(1 - h**2) * dh` in the last bit of a few entries. Approximate is what the grader asks.
#
# ## Stage 3: batch normalization, atom by atom
# Go back through the batchnorm lines in reverse:
#
# - `hpreact = bngain * bnraw + bnbias`: `bngain` and `bnbias` are `(1, 64)` and are
#   copied down all `n` rows, so their gradients sum over dim 0 with `keepdim=True`.
# - `bnraw = bndiff * bnvar_inv`: `bnvar_inv` is `(1, 64)`, copied again.
# - `bnvar_inv = (bnvar + 1e-5) ** -0.5`: the power rule.
# - `bnvar = 1/(n-1) * bndiff2.sum(0, keepdim=True)`: a sum *forward* is a copy
#   *backward*: every row of `bndiff2` gets the same gradient, times $\frac{1}{n-1}$.
# - `bndiff2 = bndiff ** 2`.
# - `bndiff` is used twice, in `bnraw` and in `bndiff2`: add the two contributions.
# - `bndiff = hprebn - bnmeani` and `bnmeani` is the mean of `hprebn`: `hprebn` is used
#   twice too (directly, and through the mean), so `dhprebn` has two parts.
#
# Mind $n-1$ versus $n$: the variance divides by $n-1$, the mean by $n$. Use the
# `n` from the shapes; the grader's batches have other sizes.

# %% solution id=stage3
def backprop_batchnorm(dhpreact, bngain, bnraw, bndiff, bnvar, bnvar_inv):
    n = bnraw.shape[0]
    dbngain = dbnbias = dbnraw = dbnvar_inv = dbnvar = dbndiff2 = dbndiff = dbnmeani = dhprebn = None
    ### BEGIN SOLUTION
    # hpreact = bngain * bnraw + bnbias, gain and bias copied down the rows
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dbnraw = bngain * dhpreact
    # bnraw = bndiff * bnvar_inv
    dbndiff = bnvar_inv * dbnraw
    dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)
    # bnvar_inv = (bnvar + eps) ** -0.5
    dbnvar = -0.5 * (bnvar + 1e-5)**-1.5 * dbnvar_inv
    # bnvar = 1/(n-1) * sum over rows of bndiff2: each row receives the same gradient
    dbndiff2 = torch.ones_like(bndiff) / (n - 1) * dbnvar
    # bndiff2 = bndiff ** 2, the second use of bndiff
    dbndiff += 2 * bndiff * dbndiff2
    # bndiff = hprebn - bnmeani, bnmeani copied down the rows
    dhprebn = dbndiff.clone()
    dbnmeani = -dbndiff.sum(0, keepdim=True)
    # bnmeani = 1/n * sum over rows of hprebn, the second use of hprebn
    dhprebn += torch.ones_like(bndiff) / n * dbnmeani
    ### END SOLUTION
    return dbngain, dbnbias, dbnraw, dbnvar_inv, dbnvar, dbndiff2, dbndiff, dbnmeani, dhprebn

# %% locked id=run_stage3
with torch.no_grad():
    (dbngain, dbnbias, dbnraw, dbnvar_inv, dbnvar, dbndiff2, dbndiff, dbnmeani,
     dhprebn) = backprop_batchnorm(hpreact.grad, bngain, bnraw, bndiff, bnvar, bnvar_inv)
cmp('bngain', dbngain, bngain)
cmp('bnbias', dbnbias, bnbias)
cmp('bnraw', dbnraw, bnraw)
cmp('bnvar_inv', dbnvar_inv, bnvar_inv)
cmp('bnvar', dbnvar, bnvar)
cmp('bndiff2', dbndiff2, bndiff2)
cmp('bndiff', dbndiff, bndiff)
cmp('bnmeani', dbnmeani, bnmeani)
cmp('hprebn', dhprebn, hprebn)

# %% tests id=test_stage3 points=3
# stage 3: the nine batchnorm gradients match PyTorch's on this batch...
### BEGIN HIDDEN TESTS
hand_in('test_stage3', backprop_batchnorm)  # graded outside this kernel, on fresh batches
### END HIDDEN TESTS
expect_grads(globals(), ['bngain', 'bnbias', 'bnraw', 'bnvar_inv', 'bnvar', 'bndiff2', 'bndiff',
                         'bnmeani', 'hprebn'])
expect_fresh('test_stage3', backprop_batchnorm)  # ...and on a fresh float64 batch of other sizes

# %% [markdown]
# ## Stage 4: the first layer and the embedding
# `hprebn = embcat @ W1 + b1` is the same kind of layer as in stage 2. `embcat` is only a
# different view of `emb`, so its gradient is the same numbers viewed back in the shape of
# `emb`.
#
# The last step is the interesting one. `emb = C[Xb]` *reads* rows of `C`: row
# `Xb[i, j]` of `C` is copied to `emb[i, j]`. Backwards, each `demb[i, j]` has to be
# *added* into row `Xb[i, j]` of `dC`, and a character that appears several times in the
# batch collects several contributions. A Python loop over `i` and `j` does it; so does
# one call to `index_add_`, which is what you would use in practice.

# %% solution id=stage4
def backprop_layer1(dhprebn, embcat, W1, emb, Xb, C):
    dembcat = dW1 = db1 = demb = dC = None
    ### BEGIN SOLUTION
    # hprebn = embcat @ W1 + b1
    dembcat = dhprebn @ W1.T
    dW1 = embcat.T @ dhprebn
    db1 = dhprebn.sum(0)
    # embcat = emb.view(n, -1)
    demb = dembcat.view(emb.shape)
    # emb = C[Xb]: scatter-add every row of demb into the row of C it was read from
    dC = torch.zeros_like(C)
    dC.index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))
    ### END SOLUTION
    return dembcat, dW1, db1, demb, dC

# %% locked id=run_stage4
with torch.no_grad():
    dembcat, dW1, db1, demb, dC = backprop_layer1(hprebn.grad, embcat, W1, emb, Xb, C)
cmp('embcat', dembcat, embcat)
cmp('W1', dW1, W1)
cmp('b1', db1, b1)
cmp('emb', demb, emb)
cmp('C', dC, C)

# %% tests id=test_stage4 points=2
# stage 4: dembcat, dW1, db1, demb and dC match PyTorch's on this batch...
### BEGIN HIDDEN TESTS
hand_in('test_stage4', backprop_layer1)  # graded outside this kernel, on fresh batches
### END HIDDEN TESTS
expect_grads(globals(), ['embcat', 'W1', 'b1', 'emb', 'C'])
expect_fresh('test_stage4', backprop_layer1)  # ...and on a fresh float64 batch of other sizes

# %% [markdown]
# ## What you have done
# That is the whole backward pass: 26 gradients, each a line or two, and together they
# are what `loss.backward()` computes. Most of it came from three rules: a local
# derivative times the gradient flowing in; a value used several times sums the
# gradients of its uses; and a gradient always has the shape of its value.
#
# It was also slow going. Notebook 2 collapses all of stage 1 into two lines with a little
# math on paper, and notebook 3 does the same for stage 3. Notebook 4 then trains the
# network with nothing but your own gradients.
