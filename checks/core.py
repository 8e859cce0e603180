"""Running a student's function fairly: fresh float64 inputs, autograd off, clear verdicts."""
import inspect
from contextlib import contextmanager

import torch

from helpers import diagnose

RTOL, ATOL = 1e-6, 1e-10  # float64: every exact rewrite passes, a 31/32 factor does not


class GradingError(AssertionError):
    pass


def _refuse(*args, **kwargs):
    raise RuntimeError('autograd is switched off while grading: compute this gradient by hand, '
                       'without .backward() or torch.autograd')


AUTOGRAD_DOORS = [(torch.Tensor, 'backward'), (torch.autograd, 'backward'), (torch.autograd, 'grad'),
                  (torch.autograd.functional, 'vjp'), (torch.autograd.functional, 'jacobian'),
                  (torch.func, 'grad'), (torch.func, 'grad_and_value'), (torch.func, 'vjp')]


@contextmanager
def autograd_off():
    """float64 by default, no graph, and every way into autograd raises."""
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr in AUTOGRAD_DOORS]
    dtype = torch.get_default_dtype()
    try:
        for owner, attr, _ in saved:
            setattr(owner, attr, _refuse)
        torch.set_default_dtype(torch.float64)
        with torch.no_grad():
            yield
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)
        torch.set_default_dtype(dtype)


def call_student(fn, inputs, outputs, where):
    """fn(**inputs) under autograd_off(); the returned tensors, named as `outputs`."""
    if not callable(fn):
        raise GradingError(f'{where}: expected a function, got {type(fn).__name__}')
    params = list(inspect.signature(fn).parameters)
    missing = [p for p in params if p not in inputs]
    if missing:
        raise GradingError(f'{where}: {fn.__name__} takes {missing}, which the grader does not pass. '
                           f'Keep the arguments as given: {list(inputs)}')
    args = {p: inputs[p].clone() if isinstance(inputs[p], torch.Tensor) else inputs[p] for p in params}
    with autograd_off():
        try:
            got = fn(**args)
        except NotImplementedError:
            raise GradingError(f'{where}: {fn.__name__} is not written yet (it raises NotImplementedError)') from None
        except Exception as e:
            raise GradingError(f'{where}: {fn.__name__} raised {type(e).__name__}: {e}') from e
    if len(outputs) == 1 and not isinstance(got, (tuple, list)):
        got = (got,)
    if not isinstance(got, (tuple, list)) or len(got) != len(outputs):
        raise GradingError(f'{where}: {fn.__name__} should return {len(outputs)} values '
                           f'({", ".join(outputs)}), got {type(got).__name__}'
                           + (f' of {len(got)}' if isinstance(got, (tuple, list)) else ''))
    return dict(zip(outputs, got))


def compare(got, want, where):
    """Raise one GradingError naming every gradient in `got` that differs from `want`."""
    problems = []
    for name, ref in want.items():
        hint = diagnose(got[name], ref, name, rtol=RTOL, atol=ATOL)
        if hint:
            problems.append(hint)
    if problems:
        raise GradingError(f'{where}:\n  ' + '\n  '.join(problems))


def check_cases(fn, cases, make_case, inputs, outputs, label):
    """For every case (a dict of settings), make_case(**case) gives fresh tensors and
    PyTorch's gradients; fn gets `inputs` and must return `outputs`."""
    for case in cases:
        values = make_case(**case)
        where = f'{label}, fresh batch with ' + ', '.join(f'{k}={v}' for k, v in case.items())
        got = call_student(fn, {k: values[k] for k in inputs}, outputs, where)
        compare(got, {k: values[k] for k in outputs}, where)


def expect_grads(namespace, names):
    """The visible tests: every d<name> in the notebook matches PyTorch's <name>.grad."""
    problems = [diagnose(namespace.get('d' + k), namespace[k].grad, 'd' + k) for k in names]
    problems = [p for p in problems if p]
    if problems:
        raise GradingError('\n'.join(problems))
    print(f'd{names[0]} matches' if len(names) == 1 else f'all {len(names)} gradients match', 'PyTorch on this batch')
