"""Hidden tests of notebook 2: the fused dlogits on fresh logits, and the three questions."""
import torch
import torch.nn.functional as F

from checks.core import GradingError, check_cases, passed

# other batch sizes and numbers of classes; the last case has logits in the thousands,
# where exp overflows to inf (in float64 too) and a softmax without the max trick gives NaN
CASES = [dict(n=32, vocab_size=27, scale=1.0, seed=1), dict(n=5, vocab_size=7, scale=1.0, seed=2),
         dict(n=2, vocab_size=3, scale=1.0, seed=3), dict(n=100, vocab_size=50, scale=3.0, seed=4),
         dict(n=16, vocab_size=27, scale=1000.0, seed=5)]


def fresh_logits(n, vocab_size, scale, seed):
    """Random float64 logits and labels, and PyTorch's gradient of the mean cross-entropy.
    The labels never use the last class, so F.one_hot(Yb) without num_classes is caught."""
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(n, vocab_size, generator=g, dtype=torch.float64)).requires_grad_()
    Yb = torch.randint(0, vocab_size - 1, (n,), generator=g)
    F.cross_entropy(logits, Yb).backward()
    return dict(logits=logits.detach(), Yb=Yb, dlogits=logits.grad)


def check_dlogits(fn):
    """backprop_logits(logits, Yb) on every case of CASES."""
    check_cases(fn, CASES, fresh_logits, ['logits', 'Yb'], ['dlogits'], 'backprop_logits')


def _number(answer, name):
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise GradingError(f'{name} should be a number, got {type(answer).__name__}')
    return answer


def check_row_sum(row_sum):
    row_sum = _number(row_sum, 'row_sum')
    if abs(row_sum) > 1e-6:
        raise GradingError(f'row_sum = {row_sum} is not what a row of dlogits adds up to: '
                           'add up (p_k - 1[k = y]) / n over all k')
    passed('row_sum')


def _index_tensor(answer, name, n):
    if not isinstance(answer, torch.Tensor) or answer.shape != (n,):
        raise GradingError(f'{name} should be a tensor of shape ({n},), one entry per example')
    return answer


def check_negative_column(negative_column, Yb):
    negative_column = _index_tensor(negative_column, 'negative_column', Yb.shape[0])
    if negative_column.is_floating_point() or not torch.equal(negative_column, Yb):
        wrong = (negative_column != Yb).sum().item()
        raise GradingError(f'negative_column is wrong for {wrong} of {Yb.shape[0]} examples '
                           '(and should hold whole column indices): which k makes p_k - 1[k = y] negative?')
    passed('negative_column')


def check_pull(pull, logits, Yb):
    n = Yb.shape[0]
    pull = _index_tensor(pull, 'pull', n)
    want = 1 - F.softmax(logits.double(), 1)[range(n), Yb]
    if not torch.allclose(pull.double(), want, rtol=1e-4, atol=1e-6):
        raise GradingError('pull is not n times the size of the label\'s entry of dlogits: '
                           'write that entry, p_y - 1 over n, with probs')
    passed('pull')
