# %% [markdown]
# # Backprop Ninja 3: batchnorm in one go, derived
#
# In notebook 1 you went through batch normalization in nine small gradients. Here you
# derive its backward pass on paper, as the lecture does, and end with one line of code
# that takes $\frac{\partial L}{\partial y}$ (`dhpreact`) straight to
# $\frac{\partial L}{\partial x}$ (`dhprebn`). The derivation visits the values in the
# order backpropagation would: $\hat x$, then $\sigma^2$, then $\mu$, then $x$; a fifth
# step simplifies the result. This is the notebook where most of the work happens on
# paper, so keep a pencil close.
#
# **How this notebook is graded.** Each step is its own function and its own grade, so
# each piece you understand earns its points. The grader runs every function on fresh
# batches in float64 with autograd switched off: batch sizes 2, 3, 5, 32 and 100, several
# widths, and features whose scales range from $10^{-3}$ to $10^{3}$. Each step receives
# PyTorch's gradients of its inputs, so a mistake in one step costs only that step.
#
# | grade cell | step | function | points |
# |---|---|---|---|
# | `test_step1` | $\partial L / \partial \hat x$ | `backprop_bnraw` | 1 |
# | `test_step2` | $\partial L / \partial \sigma^2$ | `backprop_bnvar` | 2 |
# | `test_step3` | $\partial L / \partial \mu$ | `backprop_bnmeani` | 2 |
# | `test_step4` | $\partial L / \partial x$, three paths | `backprop_hprebn` | 2 |
# | `test_step5` | $\partial L / \partial x$, one line | `backprop_batchnorm_fused` | 3 |

# %% locked id=imports
import matplotlib.pyplot as plt
import torch

from helpers import cmp, forward_atoms, notebook1_batch, numerical_grad
from checks.batchnorm import expect_step, name_mistake
from checks.core import expect_fresh
from checks.handin import hand_in

# %% [markdown]
# ## The network of notebook 1
# Same names, same parameters, same batch of 32, drawn by `notebook1_batch` (in
# `helpers`) exactly as notebook 1 draws them. `forward_atoms` (also in `helpers`) runs
# notebook 1's chunked forward pass and returns every intermediate by name; after
# `loss.backward()` each one holds PyTorch's gradient, for `cmp`.

# %% locked id=data
parameters, Xb, Yb, itos = notebook1_batch()
C, W1, b1, W2, b2, bngain, bnbias = parameters
n, n_hidden = Xb.shape[0], W1.shape[1]

# %% locked id=forward
atoms = forward_atoms(parameters, Xb, Yb)
atoms['loss'].backward()
hprebn, bnmeani, bndiff, bnvar, bnvar_inv, bnraw, hpreact = (
    atoms[k] for k in ['hprebn', 'bnmeani', 'bndiff', 'bnvar', 'bnvar_inv', 'bnraw', 'hpreact'])
print(f"loss {atoms['loss'].item():.4f}")

# %% [markdown]
# ## First, the forward pass in one line
# The chunked batchnorm (mean, difference, square, sum, inverse square root, ...) is the
# same as this one line, with PyTorch's `var`, which divides by $n-1$ unless told
# otherwise. The finite-difference check at the end uses it again.

# %% locked id=forward_check
def batchnorm(x, bngain, bnbias):
    return bngain * (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, keepdim=True) + 1e-5) + bnbias

print(f'one line vs chunked hpreact: maxdiff {(batchnorm(hprebn, bngain, bnbias) - hpreact).abs().max().item():.1e}')

# %% [markdown]
# Not zero, but a few float32 rounding steps: `hpreact` reaches about 3.3, where two
# neighbouring float32 numbers are $2.4 \cdot 10^{-7}$ apart, and the two versions round
# at different places on the way to the same number.
#
# ## The math for one neuron
# Batchnorm treats every neuron, every column of `hprebn`, on its own, so derive it for
# one neuron: its values $x_1, \dots, x_n$ over a batch of $n$ examples.
#
# $$\mu = \frac{1}{n}\sum_{i=1}^{n} x_i \qquad
#   \sigma^2 = \frac{1}{n-1}\sum_{i=1}^{n} (x_i - \mu)^2 \qquad
#   \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}} \qquad
#   y_i = \gamma \hat x_i + \beta$$
#
# The variance divides by $n - 1$ (Bessel's correction), as in the lecture, and so does
# every derivative of it below; $\epsilon = 10^{-5}$.
#
# | math | code | shape for all 64 neurons |
# |---|---|---|
# | $x_i$ | `hprebn` | (n, 64) |
# | $\mu$ | `bnmeani` | (1, 64) |
# | $x_i - \mu$ | `bndiff` | (n, 64) |
# | $\sigma^2$ | `bnvar` | (1, 64) |
# | $1/\sqrt{\sigma^2 + \epsilon}$ | `bnvar_inv` | (1, 64) |
# | $\hat x_i$ | `bnraw` | (n, 64) |
# | $\gamma, \beta$ | `bngain`, `bnbias` | (1, 64) |
# | $y_i$ | `hpreact` | (n, 64) |
#
# Given $\frac{\partial L}{\partial y_i}$ for every $i$ (`hpreact.grad`), we want
# $\frac{\partial L}{\partial x_i}$. The trap: $x$, $\hat x$ and $y$ are $n$ numbers each,
# but $\mu$ and $\sigma^2$ are *one* number each, used by many others. Draw who uses whom:

# %% locked id=graph
fig, ax = plt.subplots(figsize=(10, 5.5))
rows = {'1': 3.0, '2': 2.0, '3': 1.0, 'n': -0.6}
where, label = {}, {'mu': r'$\mu$', 'var': r'$\sigma^2$', 'L': '$L$'}
for i, height in rows.items():
    where['x' + i], where['xhat' + i], where['y' + i] = (0, height), (5, height), (6.6, height)
    label['x' + i], label['xhat' + i], label['y' + i] = f'$x_{i}$', rf'$\hat x_{i}$', f'$y_{i}$'
where.update(mu=(2.2, 4.6), var=(3.3, -2.4), L=(8.2, 1.2))
MU, VAR, PLAIN = 'tab:orange', 'tab:purple', 'dimgray'

def arrow(start, end, color, width=1.2):
    ax.annotate('', xy=where[end], xytext=where[start],
                arrowprops=dict(arrowstyle='-|>', color=color, lw=width, shrinkA=13, shrinkB=13))

for i in rows:
    arrow('x' + i, 'mu', MU, 0.8)
    arrow('x' + i, 'var', VAR, 0.8)
    arrow('x' + i, 'xhat' + i, PLAIN)
    arrow('mu', 'xhat' + i, MU)
    arrow('var', 'xhat' + i, VAR)
    arrow('xhat' + i, 'y' + i, PLAIN)
    arrow('y' + i, 'L', PLAIN, 0.8)
arrow('mu', 'var', MU, 2.0)
for key, (px, py) in where.items():
    edge = {'mu': MU, 'var': VAR}.get(key, 'black')
    ax.text(px, py, label[key], ha='center', va='center', fontsize=17 if edge != 'black' else 14,
            bbox=dict(boxstyle='circle', fc='white', ec=edge, lw=2 if edge != 'black' else 1))
for column in (0, 5, 6.6):
    ax.text(column, 0.25, r'$\vdots$', ha='center', va='center', fontsize=16)
ax.text(2.2, 5.35, r'$\mu$: $n+1$ arrows out, to every $\hat x_i$ and to $\sigma^2$', ha='center', color=MU, fontsize=11)
ax.text(3.3, -3.15, r'$\sigma^2$: $n$ arrows out, to every $\hat x_i$', ha='center', color=VAR, fontsize=11)
ax.text(0, 4.0, r'each $x_i$: 3 arrows out', ha='center', fontsize=11)
ax.text(6.6, 4.0, r'$y_i = \gamma \hat x_i + \beta$', ha='center', fontsize=11)
ax.set(xlim=(-1, 9), ylim=(-3.5, 5.8))
ax.axis('off')
ax.set_title('batchnorm of one neuron over a batch of n: an arrow goes from a value to each value that uses it')
plt.show()

# %% [markdown]
# Backpropagation walks this graph from right to left and visits a node only after every
# node that uses it: $\hat x$, then $\sigma^2$, then $\mu$ (which $\sigma^2$ uses), then
# $x$. Where several arrows leave a node, the gradients coming back along them **add up**.
#
# ## Step 1: $\partial L / \partial \hat x_i$
# Each $\hat x_i$ has one arrow out, to $y_i = \gamma \hat x_i + \beta$, so
#
# $$\frac{\partial L}{\partial \hat x_i} = \frac{\partial L}{\partial y_i}\,\frac{\partial y_i}{\partial \hat x_i} = \;?$$
#
# In code, for all neurons at once: `dhpreact` is (n, 64) and `bngain` is (1, 64).

# %% solution id=step1
def backprop_bnraw(dhpreact, bngain):
    dbnraw = None
    ### BEGIN SOLUTION
    # y_i = gamma xhat_i + beta, so dy_i/dxhat_i = gamma; gamma broadcasts down the rows
    dbnraw = bngain * dhpreact
    ### END SOLUTION
    return dbnraw

# %% locked id=run_step1
with torch.no_grad():
    dbnraw = backprop_bnraw(hpreact.grad, bngain)
cmp('bnraw', dbnraw, bnraw)

# %% tests id=test_step1 points=1
# step 1: dbnraw matches PyTorch on this batch, and on a fresh float64 batch of other sizes
### BEGIN HIDDEN TESTS
hand_in('test_step1', backprop_bnraw)  # graded outside this kernel, on fresh batches
### END HIDDEN TESTS
expect_step(1, backprop_bnraw, atoms, bngain)
expect_fresh('test_step1', backprop_bnraw)

# %% [markdown]
# ## Step 2: $\partial L / \partial \sigma^2$
# $\sigma^2$ is one number, and every $\hat x_i$ uses it: $n$ arrows leave it. Along
# each arrow comes back $\frac{\partial L}{\partial \hat x_i}$ times the local derivative,
# and the $n$ contributions add up:
#
# $$\frac{\partial L}{\partial \sigma^2} = \sum_{i=1}^{n} \frac{\partial L}{\partial \hat x_i}\,\frac{\partial \hat x_i}{\partial \sigma^2}$$
#
# Find the local derivative $\frac{\partial \hat x_i}{\partial \sigma^2}$ from
# $\hat x_i = (x_i - \mu)\,(\sigma^2 + \epsilon)^{-1/2}$, with $x_i$ and $\mu$ held
# constant. Then the sum: in code, a sum over the batch is a sum over dim 0, and the
# result is one number per neuron, shape (1, 64) like `bnvar`. Your function gets
# $\frac{\partial L}{\partial \hat x}$ (`dbnraw`), $x_i - \mu$ (`bndiff`) and $\sigma^2$
# (`bnvar`).

# %% solution id=step2
def backprop_bnvar(dbnraw, bndiff, bnvar):
    dbnvar = None
    ### BEGIN SOLUTION
    # dxhat_i/dsigma^2 = (x_i - mu) * (-1/2) * (sigma^2 + eps)^(-3/2)
    # dL/dsigma^2 = sum over i of dL/dxhat_i * dxhat_i/dsigma^2: one number per neuron
    dbnvar = (-0.5 * (bnvar + 1e-5)**-1.5 * bndiff * dbnraw).sum(0, keepdim=True)
    ### END SOLUTION
    return dbnvar

# %% locked id=run_step2
with torch.no_grad():
    dbnvar = backprop_bnvar(bnraw.grad, bndiff, bnvar)
cmp('bnvar', dbnvar, bnvar)

# %% tests id=test_step2 points=2
# step 2: dbnvar matches PyTorch on this batch, and on a fresh float64 batch of other sizes
### BEGIN HIDDEN TESTS
hand_in('test_step2', backprop_bnvar)  # graded outside this kernel, on fresh batches
### END HIDDEN TESTS
expect_step(2, backprop_bnvar, atoms, bngain)
expect_fresh('test_step2', backprop_bnvar)

# %% [markdown]
# ## Step 3: $\partial L / \partial \mu$
# $\mu$ is used by every $\hat x_i$ ($n$ arrows) and by $\sigma^2$ (one more): $n + 1$
# arrows, 33 for our batch of 32, and all of them add up:
#
# $$\frac{\partial L}{\partial \mu} = \sum_{i=1}^{n} \frac{\partial L}{\partial \hat x_i}\,\frac{\partial \hat x_i}{\partial \mu}
#   \;+\; \frac{\partial L}{\partial \sigma^2}\,\frac{\partial \sigma^2}{\partial \mu}$$
#
# Look at the last factor first. With every $x_i$ held constant,
#
# $$\frac{\partial \sigma^2}{\partial \mu} = \frac{1}{n-1}\sum_{i=1}^{n} 2\,(x_i - \mu)\cdot(-1)
#   = -\frac{2}{n-1}\Big(\sum_{i=1}^{n} x_i \;-\; n\mu\Big) = 0,$$
#
# because $\mu$ is the mean of these very $x_i$: $\sum_i x_i = n\mu$. The whole
# $\sigma^2$ term vanishes. (It would not if $\mu$ were some other number, say a running
# average kept from earlier batches.) The next cell shows it on our batch: for every
# neuron, the deviations $x_i - \mu$ add up to zero, up to float32 rounding.

# %% locked id=vanishing
print(f'largest |sum over i of (x_i - mu)| among the 64 neurons: {bndiff.sum(0).abs().max().item():.1e}')
print(f'compare: the largest sum over i of |x_i - mu|:           {bndiff.abs().sum(0).max().item():.1e}')

# %% [markdown]
# So only the sum over the $\hat x_i$ remains. Find $\frac{\partial \hat x_i}{\partial \mu}$
# (with $x_i$ and $\sigma^2$ held constant) and write $\frac{\partial L}{\partial \mu}$,
# shape (1, 64). Your function also gets $\frac{\partial L}{\partial \sigma^2}$
# (`dbnvar`): keep the vanishing term in your code if you want to see it vanish, or
# leave it out.

# %% solution id=step3
def backprop_bnmeani(dbnraw, dbnvar, bndiff, bnvar):
    dbnmeani = None
    ### BEGIN SOLUTION
    # dxhat_i/dmu = -1/sqrt(sigma^2 + eps), summed over the n arrows into the xhat_i;
    # the arrow into sigma^2 carries dsigma^2/dmu = -2/(n-1) * sum_i (x_i - mu) = 0
    dbnmeani = (-(bnvar + 1e-5)**-0.5 * dbnraw).sum(0, keepdim=True)
    ### END SOLUTION
    return dbnmeani

# %% locked id=run_step3
with torch.no_grad():
    dbnmeani = backprop_bnmeani(bnraw.grad, bnvar.grad, bndiff, bnvar)
cmp('bnmeani', dbnmeani, bnmeani)

# %% tests id=test_step3 points=2
# step 3: dbnmeani matches PyTorch on this batch, and on a fresh float64 batch of other sizes
### BEGIN HIDDEN TESTS
hand_in('test_step3', backprop_bnmeani)  # graded outside this kernel, on fresh batches
### END HIDDEN TESTS
expect_step(3, backprop_bnmeani, atoms, bngain)
expect_fresh('test_step3', backprop_bnmeani)

# %% [markdown]
# ## Step 4: $\partial L / \partial x_i$, through three paths
# Each $x_i$ has three arrows out: to its own $\hat x_i$, to $\mu$ and to $\sigma^2$.
# Chain along each one and add:
#
# $$\frac{\partial L}{\partial x_i} =
#   \frac{\partial L}{\partial \hat x_i}\,\frac{\partial \hat x_i}{\partial x_i}
#   + \frac{\partial L}{\partial \mu}\,\frac{\partial \mu}{\partial x_i}
#   + \frac{\partial L}{\partial \sigma^2}\,\frac{\partial \sigma^2}{\partial x_i}$$
#
# The first factor of each product is a step you have done. The three local derivatives
# are yours to find, each with the node's other inputs held constant:
# $\frac{\partial \hat x_i}{\partial x_i}$ with $\mu$ and $\sigma^2$ fixed, and
# $\frac{\partial \sigma^2}{\partial x_i}$ with $\mu$ fixed ($\mu$'s own dependence on
# $x_i$ is the second path already).
#
# For the last one, write the variance with another index,
# $\sigma^2 = \frac{1}{n-1}\sum_{j=1}^{n} (x_j - \mu)^2$, so that the $j$ of the sum
# does not get mixed up with the $i$ you differentiate for: only the term $j = i$
# contains $x_i$. Mind the two divisors: $\mu$ divides by $n$, $\sigma^2$ by $n - 1$.
#
# Your function gets PyTorch's $\frac{\partial L}{\partial \hat x}$,
# $\frac{\partial L}{\partial \sigma^2}$ and $\frac{\partial L}{\partial \mu}$, and
# returns (n, 64). Take $n$ from a tensor's shape.

# %% solution id=step4
def backprop_hprebn(dbnraw, dbnvar, dbnmeani, bndiff, bnvar):
    dhprebn = None
    ### BEGIN SOLUTION
    n = bndiff.shape[0]
    # dxhat_i/dx_i = 1/sqrt(sigma^2 + eps)    dmu/dx_i = 1/n
    # dsigma^2/dx_i = 1/(n-1) * 2 (x_i - mu)  (of the sum over j, only j = i has x_i)
    dhprebn = dbnraw * (bnvar + 1e-5)**-0.5 + dbnmeani / n + dbnvar * 2 * bndiff / (n - 1)
    ### END SOLUTION
    return dhprebn

# %% locked id=run_step4
with torch.no_grad():
    dhprebn = backprop_hprebn(bnraw.grad, bnvar.grad, bnmeani.grad, bndiff, bnvar)
cmp('hprebn', dhprebn, hprebn)
name_mistake(4, dhprebn, atoms, bngain)

# %% tests id=test_step4 points=2
# step 4: dhprebn matches PyTorch on this batch, and on a fresh float64 batch of other sizes
### BEGIN HIDDEN TESTS
hand_in('test_step4', backprop_hprebn)  # graded outside this kernel, on fresh batches
### END HIDDEN TESTS
expect_step(4, backprop_hprebn, atoms, bngain)
expect_fresh('test_step4', backprop_hprebn)

# %% [markdown]
# ## Step 5: one line for all neurons
# Now put steps 1 to 3 into step 4 and simplify, so that $\frac{\partial L}{\partial x_i}$
# comes straight from the $\frac{\partial L}{\partial y_j}$. Some help:
#
# - write everything with $\hat x$ and $s = 1/\sqrt{\sigma^2 + \epsilon}$ (`bnvar_inv`):
#   $x_i - \mu = \hat x_i / s$;
# - use $j$ for the index inside the sums of steps 2 and 3, and $i$ for the $x_i$ you want;
# - substitute, then factor $\frac{\gamma s}{n}$ out of all three terms. In the bracket
#   you should be left with $\frac{\partial L}{\partial y_i}$ and two sums over the batch,
#   $\sum_j \frac{\partial L}{\partial y_j}$ and $\sum_j \frac{\partial L}{\partial y_j}\hat x_j$.
#
# Then write it for all 64 neurons at once. Everything in the formula is per neuron:
# `bngain` and `bnvar_inv` are (1, 64), each sum over the batch is a (1, 64) row (dim 0,
# `keepdim=True`), and all of them broadcast down the n rows of `dhpreact` and `bnraw`.
# It works for any batch size and any width only if you take $n$ from a tensor's shape:
# the notebook's own `n` is 32, and a function that uses it passes here and fails on
# every batch of another size.

# %% solution id=step5
def backprop_batchnorm_fused(dhpreact, bngain, bnvar_inv, bnraw):
    dhprebn = None
    ### BEGIN SOLUTION
    # With s = 1/sqrt(sigma^2 + eps), dy_i = dL/dy_i and x_i - mu = xhat_i / s, steps 1-3 are
    #   dL/dxhat_i = gamma dy_i
    #   dL/dsigma^2 = -1/2 s^3 sum_j gamma dy_j (x_j - mu) = -1/2 s^2 gamma sum_j dy_j xhat_j
    #   dL/dmu = -s gamma sum_j dy_j
    # and step 4 becomes
    #   dL/dx_i = s gamma dy_i - (s gamma / n) sum_j dy_j - (s gamma / (n-1)) xhat_i sum_j dy_j xhat_j
    #           = (gamma s / n) (n dy_i - sum_j dy_j - n/(n-1) xhat_i sum_j dy_j xhat_j)
    n = bnraw.shape[0]
    dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0, keepdim=True)
                                        - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0, keepdim=True))
    ### END SOLUTION
    return dhprebn

# %% locked id=run_step5
with torch.no_grad():
    dhprebn_fused = backprop_batchnorm_fused(hpreact.grad, bngain, bnvar_inv, bnraw)
cmp('hprebn', dhprebn_fused, hprebn)
name_mistake(5, dhprebn_fused, atoms, bngain)

# %% tests id=test_step5 points=3
# step 5: dhprebn matches PyTorch on this batch, and on a fresh float64 batch of other sizes
### BEGIN HIDDEN TESTS
hand_in('test_step5', backprop_batchnorm_fused)  # graded outside this kernel, on fresh batches
### END HIDDEN TESTS
expect_step(5, backprop_batchnorm_fused, atoms, bngain)
expect_fresh('test_step5', backprop_batchnorm_fused)

# %% [markdown]
# *Approximate*, not exact, for the reason notebook 2 found for `dlogits`: your line and
# autograd's walk back through nine atoms compute the same real number along different
# paths of float32 operations. In float64 the difference shrinks by about eight orders of
# magnitude:

# %% locked id=float64
parameters64 = [p.detach().double().requires_grad_() for p in parameters]
atoms64 = forward_atoms(parameters64, Xb, Yb)
atoms64['loss'].backward()
with torch.no_grad():
    dhprebn64 = backprop_batchnorm_fused(atoms64['hpreact'].grad, parameters64[5],
                                         atoms64['bnvar_inv'], atoms64['bnraw'])
cmp('hprebn float64', dhprebn64, atoms64['hprebn'])

# %% [markdown]
# ## A check that does not trust PyTorch
# Every check so far compared your gradients with PyTorch's. Finite differences need
# nothing but the forward pass: nudge one input up and down by a tiny amount $h$, see how
# the loss moves, and divide: $\frac{\partial L}{\partial x} \approx \frac{L(x + h) - L(x - h)}{2h}$.
# `numerical_grad(f, x, dout)` in `helpers` does this for $L = \sum f(x) \cdot$ `dout`,
# one entry of $x$ at a time, in float64.
#
# Here it is on a small batch of its own, 5 examples of 3 neurons with very different
# scales, random $\gamma$, $\beta$ and an upstream gradient `dout`
# ($\frac{\partial L}{\partial y}$), compared with your steps 1 to 4 chained together and
# with your one line.

# %% locked id=finite_differences
gen = torch.Generator().manual_seed(3)
x = torch.randn(5, 3, generator=gen, dtype=torch.float64) * torch.tensor([0.01, 1.0, 100.0], dtype=torch.float64)
gain = 1 + 0.1 * torch.randn(1, 3, generator=gen, dtype=torch.float64)
bias = 0.1 * torch.randn(1, 3, generator=gen, dtype=torch.float64)
dout = torch.randn(5, 3, generator=gen, dtype=torch.float64)

numerical = numerical_grad(lambda x: batchnorm(x, gain, bias), x, dout)

xdiff = x - x.mean(0, keepdim=True)
xvar = x.var(0, keepdim=True)
xhat = xdiff * (xvar + 1e-5)**-0.5
with torch.no_grad():
    dxhat = backprop_bnraw(dout, gain)
    dvar = backprop_bnvar(dxhat, xdiff, xvar)
    dmean = backprop_bnmeani(dxhat, dvar, xdiff, xvar)
    chained = backprop_hprebn(dxhat, dvar, dmean, xdiff, xvar)
    one_line = backprop_batchnorm_fused(dout, gain, (xvar + 1e-5)**-0.5, xhat)
for name, mine in [('steps 1-4 chained', chained), ('one line', one_line)]:
    agree = torch.allclose(mine, numerical, rtol=1e-6, atol=1e-9)
    print(f'finite differences vs your {name:17s}: maxdiff {(mine - numerical).abs().max().item():.1e} '
          f'(largest entry {numerical.abs().max().item():.1e}), agree: {agree}')

# %% [markdown]
# The remaining difference is the finite differences' own error (rounding in
# $L(x+h) - L(x-h)$, divided by a small $2h$), not yours. Finite differences are slow, one
# forward pass per input entry and direction, which is why nobody trains with them; as a
# check on a small input they are the referee that depends on nothing else.
#
# ## Bessel's correction, and a train/test mismatch
# We divided the batch variance by $n - 1$ everywhere, forward and backward. Why $n-1$:
# the $x_i$ scatter around their own mean $\mu$ a little less than around the true mean
# of all the data, and dividing by $n-1$ instead of $n$ makes up for it exactly on
# average (an unbiased estimate of the variance).
#
# It matters in practice because a batchnorm layer uses two variances. During training
# it normalizes with the batch's variance; at test time, with one estimated over the
# training data (notebook 4 calibrates it after training). PyTorch's `nn.BatchNorm1d`
# normalizes a training batch with the *biased* variance ($1/n$) but keeps the
# *unbiased* one ($1/(n-1)$) in the running estimate it uses at test time, so the network
# is tested on activations scaled differently from those it was trained on. Give it our
# batch and let its running statistics be exactly this batch's (`momentum=1.0`):

# %% locked id=bessel
bn = torch.nn.BatchNorm1d(n_hidden, momentum=1.0, affine=False)
with torch.no_grad():
    train_out = bn(hprebn)  # training mode: normalized with 1/n; running_var stored with 1/(n-1)
    bn.eval()
    test_out = bn(hprebn)   # test mode, the same batch, normalized with the stored running_var
print(f'training output / test output on the same batch: {(train_out / test_out).mean().item():.4f}')
print(f'sqrt(n / (n-1)) for n = {n}:                      {(n / (n - 1))**0.5:.4f}')

# %% [markdown]
# The same inputs come out 1.6% larger in training than at test time; with a batch of 4
# it would be 15%. Using $1/(n-1)$ in training too, as the lecture and this kit do,
# removes the mismatch: both sides estimate the same variance.
#
# ## What you have done
# Steps 1 to 4 are the chain rule on a graph where two values, $\mu$ and $\sigma^2$, fan
# out to the whole batch, and step 5 folds them into one line:
#
# - forgetting a fan-out sum gives a gradient of the wrong shape, or the wrong numbers;
# - $\frac{\partial \sigma^2}{\partial \mu} = 0$ only because $\mu$ is the batch's own mean;
# - every derivative of the variance keeps its $n - 1$;
# - the sums over the batch are (1, 64) rows that broadcast down the rows, for any $n$.
#
# Notebook 4 puts notebook 2's `dlogits`, this one line and notebook 1's layers together
# and trains the network with nothing but your own gradients.
