"""Notebook 2's graded cells: the fused dlogits on fresh logits, and the three questions
(one number, two small functions of probs and Yb, so printed values pasted in fail). Every
right answer here is read off PyTorch's own dlogits (autograd), never written out."""
import torch
import torch.nn.functional as F

from checks.core import MAX_TEXT, FunctionSpec, Spec, describe_sizes, judge_values

# other batch sizes and numbers of classes; logits in the thousands, where exp overflows to
# inf (in float64 too) and a softmax without the max trick gives NaN
SIZES = [dict(n=32, vocab_size=27, scale=1.0), dict(n=5, vocab_size=7, scale=1.0),
         dict(n=2, vocab_size=3, scale=1.0), dict(n=100, vocab_size=50, scale=3.0),
         dict(n=16, vocab_size=27, scale=1000.0)]
VISIBLE = dict(n=6, vocab_size=9, scale=1000.0)


def make_logits(g, n, vocab_size, scale):
    """Random float64 logits, their softmax, and labels that never use the last class (so
    F.one_hot(Yb) without num_classes is caught)."""
    logits = scale * torch.randn(n, vocab_size, generator=g, dtype=torch.float64)
    Yb = torch.randint(0, vocab_size - 1, (n,), generator=g)
    return dict(logits=logits, Yb=Yb, probs=F.softmax(logits, 1))


def dlogits_reference(case):
    logits = case['logits'].clone().requires_grad_()
    with torch.enable_grad():
        F.cross_entropy(logits, case['Yb']).backward()
    return {'dlogits': logits.grad}


class RowSum(Spec):
    """Question 1: what every row of dlogits adds up to, a plain number."""
    gid, title, answer = 'test_row_sum', 'question 1 (row_sum)', 'row_sum'

    def cases(self, seed, visible=False):
        """Fresh logits: the row sums of their dlogits, by autograd, are what row_sum must be."""
        g = torch.Generator().manual_seed(seed)
        return [dict(make_logits(g, **SIZES[1]), sizes={})]

    def run(self, answer, inputs):
        if isinstance(answer, torch.Tensor) and answer.numel() == 1:
            answer = answer.item()
        if answer is None:
            return {'error': 'row_sum is not written yet (still None)'}
        if isinstance(answer, bool) or not isinstance(answer, (int, float)):
            return {'error': f'row_sum should be a number, got {type(answer).__name__}'[:MAX_TEXT]}
        return {'values': {'row_sum': float(answer)}}

    def verdict(self, inputs, outputs):
        if isinstance(outputs, dict) and 'error' in outputs:
            return str(outputs['error'])[:MAX_TEXT]
        values = outputs.get('values') if isinstance(outputs, dict) else None
        got = values.get('row_sum') if isinstance(values, dict) else None
        if not isinstance(got, float):
            return 'row_sum is not a number'
        sums = dlogits_reference(inputs)['dlogits'].sum(1)
        if (sums - got).abs().max() > 1e-6:
            return (f'row_sum = {got:g} is not what a row of dlogits adds up to: add up one row of the dlogits '
                    'your backprop_logits returns, and think about why every row gives the same number')
        return None


def negative_column_verdict(inputs, outputs):
    values = outputs.get('values') if isinstance(outputs, dict) else None
    got = values.get('negative_column') if isinstance(values, dict) else None
    want = dlogits_reference(inputs)['dlogits'].argmin(1)  # each row of dlogits has one negative entry
    if isinstance(got, torch.Tensor) and got.shape == want.shape and got.is_floating_point():
        return (f'negative_column holds {got.dtype} numbers: it should hold whole column indices '
                '(an integer tensor)')
    if isinstance(got, torch.Tensor) and got.shape == want.shape and not got.is_complex() and not torch.equal(got, want):
        wrong = (got != want).sum().item()
        return (f'on fresh probabilities with {describe_sizes(inputs["sizes"])}, negative_column is wrong for '
                f'{wrong} of {want.shape[0]} examples: print a few rows of dlogits beside their example and '
                'see which entry is below zero')
    return judge_values(['negative_column'], {'negative_column': want}, outputs, inputs['sizes'])


def pull_verdict(inputs, outputs):
    return judge_values(['pull'], pull_reference(inputs), outputs, inputs['sizes'])


def pull_reference(case):
    """n times the size of each label's entry of PyTorch's dlogits, as question 3 asks."""
    dlogits = dlogits_reference(case)['dlogits']
    n = dlogits.shape[0]
    return {'pull': n * dlogits.gather(1, case['Yb'][:, None]).squeeze(1).abs()}


class Question(FunctionSpec):
    def __init__(self, gid, title, answer, returns, verdict):
        super().__init__(gid, title, answer, ['probs', 'Yb'], returns, SIZES[:4], dict(n=6, vocab_size=9, scale=1.0),
                         make_logits, None)
        self._verdict = verdict

    def verdict(self, inputs, outputs):
        return self._verdict(inputs, outputs)


SPECS = [
    FunctionSpec('test_dlogits', 'backprop_logits', 'backprop_logits', ['logits', 'Yb'], ['dlogits'],
                 SIZES, VISIBLE, make_logits, dlogits_reference),
    RowSum(),
    Question('test_negative_column', 'question 2 (negative_column)', 'negative_column', ['negative_column'],
             negative_column_verdict),
    Question('test_pull', 'question 3 (pull)', 'pull', ['pull'], pull_verdict),
]
