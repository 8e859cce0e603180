# %% [markdown]
# # Backprop Ninja 2: cross-entropy in one go
#
# In notebook 1, stage 1 took eight gradients to get from the loss back to the logits:
# through the log, the division, the sum, the exp and the max. All of that is one function,
# the softmax followed by minus the log of the label's probability, and on paper its
# derivative comes out short. Here you derive it, write `dlogits` in a few lines, find out
# where the last bits of difference from PyTorch come from, and look at what `dlogits`
# *means*.
#
# **How this notebook is graded.** The function `backprop_logits` is run by the grader on
# fresh logits in float64 with autograd switched off: other batch sizes, other numbers of
# classes than 27, and logits in the thousands. Three short questions are answered in code.
#
# | grade cell | what | points |
# |---|---|---|
# | `test_dlogits` | `backprop_logits(logits, Yb)` returns `dlogits` | 3 |
# | `test_row_sum` | question 1: what a row of `dlogits` adds up to | 1 |
# | `test_negative_column` | question 2: where the negative entry of each row is | 1 |
# | `test_pull` | question 3: how far the label's entry is pulled below zero | 1 |

# %% locked id=imports
import matplotlib
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from helpers import cmp, forward_atoms, notebook1_batch
from checks.core import expect_fresh, expect_grads
from checks.handin import hand_in

# %% [markdown]
# ## The network of notebook 1
# Same names, same parameters, same batch of 32: `notebook1_batch` (in `helpers`) draws
# them from the same seeded generator in the same order, so the loss is notebook 1's.
# `forward_atoms` (also in `helpers`) is the chunked forward pass you backpropagated
# through atom by atom; it returns every intermediate by name, and `loss.backward()`
# gives PyTorch's gradients to compare with.

# %% locked id=data
parameters, Xb, Yb, itos = notebook1_batch()
n, vocab_size = Xb.shape[0], len(itos)

# %% locked id=forward
atoms = forward_atoms(parameters, Xb, Yb)
logits, loss = atoms['logits'], atoms['loss']
loss.backward()
print(f'loss {loss.item():.4f}')

# %% [markdown]
# ## First, the forward pass in one call
# `F.cross_entropy(logits, Yb)` does in one call what the chunked forward pass does in
# eight lines. Do they agree?

# %% locked id=forward_check
loss_fast = F.cross_entropy(logits, Yb)
print(f'chunked          {loss.item():.9f}')
print(f'F.cross_entropy  {loss_fast.item():.9f}')
print(f'difference       {(loss_fast - loss).abs().item():.1e}')
next_float = torch.nextafter(loss.detach(), torch.tensor(float('inf')))
print(f'gap between two neighbouring float32 numbers near {loss.item():.2f}: {(next_float - loss).item():.1e}')

# %% [markdown]
# Almost, not exactly: the two results are neighbours, one float32 step apart. A float32
# has 24 bits of mantissa, about 7 decimal digits, so near 3.4 the representable numbers
# are $2^{-22} \approx 2.4 \cdot 10^{-7}$ apart, and every operation rounds its result to
# one of them. The chunked version rounds after each of its eight steps (max, subtract,
# exp, sum, power, multiply, log, mean); `F.cross_entropy` takes the label's log-probability
# as $\ell_y - m - \log \sum_j e^{\ell_j - m}$ ($\ell$ the row's logits, $m$ their max)
# and averages minus that, in its own order, rounding elsewhere. Both are correct to
# float32 precision, and they land on neighbouring floats. In float64 (further down) the
# same comparison differs by about $10^{-16}$.
#
# ## The derivation, on paper
# Take one example: its logits $\ell_1, \dots, \ell_V$ (one per character, $V = 27$) and
# its label $y$. The softmax turns logits into probabilities and the loss is minus the log
# of the label's probability:
#
# $$p_k = \frac{e^{\ell_k}}{\sum_{j=1}^{V} e^{\ell_j}}, \qquad L_i = -\log p_y .$$
#
# The batch loss is the mean over the $n$ examples, $L = \frac{1}{n}\sum_{i=1}^{n} L_i$.
# The question: **what is $\frac{\partial L}{\partial \ell_k}$, for every logit $k$ of
# every example?** Take it in steps, with pencil and paper:
#
# 1. Write $L_i$ without the fraction: use $\log\frac{a}{b} = \log a - \log b$ and
#    $\log e^{\ell} = \ell$. You get the label's logit and a log of a sum of exponentials.
# 2. Differentiate with respect to one logit $\ell_k$. The first term depends only on
#    $\ell_y$. For the second, use $\frac{d}{dz}\log z = \frac{1}{z}$ and the chain rule;
#    the result is a quantity you already have a name for.
# 3. Fill in the two cases:
#
#    | | $\dfrac{\partial L_i}{\partial \ell_k}$ |
#    |---|---|
#    | $k = y$ (the label's logit) | ? |
#    | $k \neq y$ (every other logit) | ? |
#
#    and write both as one expression with the indicator $\mathbb{1}[k = y]$ (1 when $k$
#    is the label, 0 otherwise).
# 4. The batch: each logit belongs to one example only, and the loss is a *mean*. What
#    does that do to your expression?
#
# ## Your turn: `dlogits` in a few lines
# Write `dlogits` from `logits` and `Yb` alone. Three things to mind:
#
# - take `n` and the number of classes from the tensors' shapes: the grader's batches have
#   other sizes, and other numbers of classes than 27;
# - the grader also sends logits in the thousands. $e^{1000}$ is `inf` in float32 and in
#   float64 alike, and `inf / inf` is NaN. A softmax written as `exp` over a sum of `exp`
#   breaks there; `F.softmax` does not, because it subtracts each row's max first
#   (notebook 1 showed that this leaves the probabilities unchanged);
# - don't modify `logits` in place: it is PyTorch's tensor, and the next cells use it.

# %% solution id=dlogits
def backprop_logits(logits, Yb):
    dlogits = None
    ### BEGIN SOLUTION
    # On paper, for one example with label y:
    #   L_i = -log p_y = -l_y + log(sum_j exp(l_j))
    #   d/dl_k log(sum_j exp(l_j)) = exp(l_k) / sum_j exp(l_j) = p_k
    #   k == y:  dL_i/dl_k = p_y - 1        k != y:  dL_i/dl_k = p_k
    #   together dL_i/dl_k = p_k - 1[k == y], and the batch mean divides every row by n.
    n = logits.shape[0]
    dlogits = F.softmax(logits, 1)  # p, from max-subtracted logits, so no overflow
    dlogits[range(n), Yb] -= 1      # the label's entry: p_y - 1
    dlogits /= n
    ### END SOLUTION
    return dlogits

# %% [markdown]
# Compare with PyTorch's `logits.grad`, which autograd got by walking back through all
# eight atoms:

# %% locked id=run_dlogits
with torch.no_grad():
    dlogits = backprop_logits(logits, Yb)
cmp('logits', dlogits, logits)

# %% tests id=test_dlogits points=3
# dlogits matches PyTorch's on this batch, and on fresh float64 logits of other sizes, in the thousands
### BEGIN HIDDEN TESTS
hand_in('test_dlogits', backprop_logits)  # graded outside this kernel: other n, other numbers of classes
### END HIDDEN TESTS
expect_grads(globals(), ['logits'])
expect_fresh('test_dlogits', backprop_logits)

# %% [markdown]
# ## Approximate, not exact: where does the difference come from?
# `cmp` says *approximate*: the largest difference from PyTorch is a few billionths.
# Differences of this size come back in notebook 4, where the whole manual backward pass
# is compared with autograd's at every training step; the lecture meets them in its
# exercise 4 (about $10^{-9}$) and leaves their source open. Here is a test that finds it:
# if the formula were slightly wrong, the difference would stay the same size in any
# precision; if it is rounding, it shrinks with the precision. So run everything again in
# float64: the same parameters converted to double, the same forward pass, autograd's
# gradient, and your function.

# %% locked id=float64
parameters64 = [p.detach().double().requires_grad_() for p in parameters]
atoms64 = forward_atoms(parameters64, Xb, Yb)
logits64, loss64 = atoms64['logits'], atoms64['loss']
loss64.backward()
with torch.no_grad():
    dlogits64 = backprop_logits(logits64, Yb)
cmp('logits float64', dlogits64, logits64)
print(f'loss: chunked vs F.cross_entropy in float64, difference '
      f'{(F.cross_entropy(logits64, Yb) - loss64).abs().item():.1e}')
for name, mine, theirs in [('float32', dlogits, logits.grad), ('float64', dlogits64, logits64.grad)]:
    maxdiff = (mine - theirs).abs().max().item()
    unit = torch.finfo(mine.dtype).eps * mine.abs().max().item()  # one rounding step at the largest entry
    print(f'{name}: maxdiff {maxdiff:.1e}, which is {maxdiff / unit:.1f} rounding steps of the largest entry')

# %% [markdown]
# The difference drops from about $5 \cdot 10^{-9}$ to about $10^{-17}$, and measured in
# rounding steps of each precision it is the same: one or two. So it is rounding, not a
# mistake. Your `dlogits` and autograd's compute the same real number along different
# paths of floating-point operations: autograd goes back through the log, the division,
# the sum, the exp and the max, rounding at each one; your few lines take a much shorter
# path. Two different paths round differently, and agree to within the precision of the
# numbers they are made of.
#
# ## What `dlogits` looks like
# Left: all of `dlogits`, one row per example, one column per character, blue below zero
# and red above (the colour scale is stretched separately on each side of zero, so that
# the small positive entries show); a white dot marks each row's label. Right: the first
# row, times $n$, as bars.

# %% locked id=picture
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw=dict(width_ratios=[1.25, 1]))
low, high = dlogits.min().item(), dlogits.max().item()
image = left.imshow(dlogits, cmap='RdBu_r', norm=matplotlib.colors.TwoSlopeNorm(vmin=low, vcenter=0, vmax=high))
left.scatter(Yb, range(n), s=10, c='white')
left.set_xticks(range(vocab_size), [itos[k] for k in range(vocab_size)])
left.set_xlabel('character k')
left.set_ylabel('example i')
left.set_title('dlogits (white dot: the label)')
fig.colorbar(image, ax=left, shrink=0.8, ticks=[low, low / 2, 0, high / 2, high], format='%.4f')

i = 0
row = n * dlogits[i]
right.bar(range(vocab_size), row, color=['tab:blue' if v < 0 else 'tab:red' for v in row])
right.axhline(0, color='gray', lw=0.8)
right.set_xticks(range(vocab_size), [itos[k] for k in range(vocab_size)])
right.set_xlabel('character k')
context = ''.join(itos[c.item()] for c in Xb[i])
right.set_title(f"example {i}: after '{context}' comes '{itos[Yb[i].item()]}'; bars: n * dlogits[{i}]")
right.text(0.98, 0.5, f'blue bar: {row[row < 0].sum().item():+.3f}\nred bars together: {row[row > 0].sum().item():+.3f}',
           transform=right.transAxes, ha='right', fontsize=11)
plt.tight_layout()
plt.show()

# %% [markdown]
# Look at both pictures before you answer. Gradient descent moves every logit *against*
# its gradient: a blue cell is a logit that the next step pushes up, a red cell one it
# pushes down. Print anything you like from `dlogits`, `probs` and `Yb` to check your
# answers.

# %% locked id=probs
probs = F.softmax(logits.detach(), 1)

# %% [markdown]
# **Question 1.** What does each row of `dlogits` add up to, in exact arithmetic? Set
# `row_sum` to that number (a plain Python number). Then check it against
# `dlogits.sum(1)` and explain to yourself why `dlogits.sum(1)` is not *exactly* it.

# %% solution id=row_sum
row_sum = None  # a number
### BEGIN SOLUTION
# each row is (p - onehot(y)) / n: the probabilities sum to 1 and the one-hot sums to 1
row_sum = 0.0
### END SOLUTION

# %% tests id=test_row_sum points=1
# row_sum is what every row of dlogits adds up to
### BEGIN HIDDEN TESTS
hand_in('test_row_sum', row_sum)
### END HIDDEN TESTS
expect_fresh('test_row_sum', row_sum)

# %% [markdown]
# **Question 2.** Every row has exactly one negative entry. In which column? Write
# `negative_column(probs, Yb)`: for every example, the column of its row's negative entry,
# computed from what you know rather than by searching `dlogits`. It is checked on fresh
# probabilities of other sizes, so it must work for any batch.

# %% solution id=negative_column
def negative_column(probs, Yb):
    """probs (n, vocab_size), Yb (n,) -> a tensor (n,) of column indices, one per example."""
    column = None
    ### BEGIN SOLUTION
    # p_k - 1[k == y] is negative only where k == y (and p_y < 1): the label's column
    column = Yb.clone()
    ### END SOLUTION
    return column

# %% tests id=test_negative_column points=1
# negative_column names the negative entry of every row, on fresh probabilities
### BEGIN HIDDEN TESTS
hand_in('test_negative_column', negative_column)
### END HIDDEN TESTS
expect_fresh('test_negative_column', negative_column)
print('on this batch:', negative_column(probs, Yb).tolist())

# %% [markdown]
# **Question 3.** In every row the label's entry is pulled below zero and the others are
# pushed above it. By how much is the label's entry pulled down? Write `pull(probs, Yb)`:
# for every example, $n$ times the size of the label's entry of `dlogits` (positive
# numbers), written with `probs`. When is it large, and when is it
# zero? Compare it with the sum of the *positive* entries of the same row, times $n$.

# %% solution id=pull
def pull(probs, Yb):
    """probs (n, vocab_size), Yb (n,) -> a tensor (n,): n times the size of each label's entry of dlogits."""
    size = None
    ### BEGIN SOLUTION
    # n * dlogits[i, y] = p_y - 1: the label is pulled by 1 - p_y, strongly when the net gives
    # it little probability, not at all when p_y = 1. The other entries push by p_k, and they
    # add up to 1 - p_y too: that is why the row sums to zero.
    size = 1 - probs[torch.arange(probs.shape[0]), Yb]
    ### END SOLUTION
    return size

# %% tests id=test_pull points=1
# pull is n times the size of the label's entry of dlogits, on fresh probabilities
### BEGIN HIDDEN TESTS
hand_in('test_pull', pull)
### END HIDDEN TESTS
expect_fresh('test_pull', pull)
print('on this batch:', [round(x, 3) for x in pull(probs, Yb).tolist()])

# %% [markdown]
# ## What it means for training
# Think of `dlogits` as forces on the logits. It says which way each logit would have to
# move to *raise* the loss, and a step of gradient descent moves the other way: on every
# example it raises the label's logit and lowers all the others, and the two sides
# balance exactly (question 1). How hard they push depends on how wrong the network was
# (question 3): an example it already gets right with confidence exerts almost no force,
# and the examples it gets wrong dominate the step. Through `h @ W2 + b2` these forces
# reach every weight in the network.
#
# The few lines of `backprop_logits` replace the eight gradients of notebook 1's stage 1.
# Notebook 3 does the same for batch normalization, where the paper work is longer.
