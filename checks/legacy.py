"""(Until notebooks 2-4 move to specs: the old in-kernel checks.) Running a student's function fairly: fresh float64 inputs, autograd off, clear verdicts,
and a check that a notebook cannot talk out of (see guard_kit and pristine)."""
import builtins
import contextlib
import inspect
import io
import sys
import types
import warnings
from contextlib import contextmanager

import torch
import torch.nn.functional as F

RECEIPT = 'hidden check passed: '
from helpers import ATOL64, RTOL64, diagnose

RTOL, ATOL = RTOL64, ATOL64  # float64: every exact rewrite passes, a 31/32 factor does not


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


# ---------------------------------------------------------------- a check the notebook can't bend
# A hidden check runs in the student's own kernel, after the student's code. So before it
# judges anything, it puts back whatever that code replaced: Python's builtins, torch's
# public namespaces and the kit's own modules (helpers, checks.*), as remembered when they
# were first imported (the grader imports them all when the kernel starts, before any cell).

_GUARDED = {}  # name -> (owner, its attributes then, the code of its functions then)
_ABSENT = object()
_KERNEL_OWNS = {('builtins', 'input')}  # ipykernel swaps builtins.input for every cell it runs
_RUNTIME = ('torch', 'IPython', 'ipykernel')  # e.g. torch.compile wraps torch.manual_seed


def _by_runtime(value):
    """True for a replacement made by torch or the kernel themselves, not by the notebook."""
    return (getattr(value, '__module__', None) or '').split('.')[0] in _RUNTIME


def _is_kit_module(name):
    return name == 'helpers' or name == 'checks' or name.startswith('checks.')


def guard_kit():
    """Remember builtins, torch's namespaces and every kit module imported so far, once each."""
    owners = [('builtins', builtins), ('torch', torch), ('torch.Tensor', torch.Tensor),
              ('torch.nn.functional', F), ('torch.testing', torch.testing),
              ('torch.autograd', torch.autograd), ('torch.linalg', torch.linalg)]
    owners += [(name, module) for name, module in list(sys.modules.items()) if _is_kit_module(name)
               and not getattr(getattr(module, '__spec__', None), '_initializing', False)]  # not half-imported
    for name, owner in owners:
        if name not in _GUARDED:
            attrs = dict(vars(owner))
            codes = {k: v.__code__ for k, v in attrs.items() if isinstance(v, types.FunctionType)}
            _GUARDED[name] = (owner, attrs, codes)


def pristine():
    """Undo every change to what guard_kit() remembered; return the names the notebook had
    changed (changes torch or the kernel made themselves are undone too, but not named)."""
    guard_kit()
    changed = []
    for name, (owner, attrs, codes) in _GUARDED.items():
        now = vars(owner)
        for attr, value in attrs.items():
            if (name, attr) in _KERNEL_OWNS:
                continue
            if now.get(attr, _ABSENT) is not value:
                if not _by_runtime(now.get(attr)):
                    changed.append(f'{name}.{attr}')
                setattr(owner, attr, value)
            if attr in codes and value.__code__ is not codes[attr]:
                value.__code__ = codes[attr]
                changed.append(f'{name}.{attr}')
        if owner is torch.Tensor:  # a method added to Tensor would shadow TensorBase's
            for attr in set(now) - set(attrs):
                delattr(owner, attr)
                changed.append(f'{name}.{attr}')
        if isinstance(owner, types.ModuleType) and sys.modules.get(name, owner) is not owner:
            sys.modules[name] = owner
            changed.append(f'sys.modules[{name!r}]')
    return changed


def put_back():
    """pristine(), saying what it put back. Hidden tests call it first, before they import
    their check, so that a replaced check is put back before it is used."""
    for name in pristine():
        print(f'[grader] put back {name}, which the notebook had replaced')


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
    quiet = io.StringIO()  # what the function prints is not graded (and stderr would cost the cell)
    with autograd_off(), warnings.catch_warnings(), contextlib.redirect_stdout(quiet), \
            contextlib.redirect_stderr(quiet):
        warnings.simplefilter('ignore')
        try:
            got = fn(**args)
        except NotImplementedError:
            raise GradingError(f'{where}: {fn.__name__} is not written yet (it raises NotImplementedError)') from None
        except Exception as e:
            raise GradingError(f'{where}: {fn.__name__} raised {type(e).__name__}: {e}') from e
        finally:
            put_back()  # whatever fn replaced, before anything judges what it returned
    if len(outputs) == 1 and not isinstance(got, (tuple, list)):
        got = (got,)
    if not isinstance(got, (tuple, list)) or len(got) != len(outputs):
        raise GradingError(f'{where}: {fn.__name__} should return {len(outputs)} values '
                           f'({", ".join(outputs)}), got {type(got).__name__}'
                           + (f' of {len(got)}' if isinstance(got, (tuple, list)) else ''))
    return dict(zip(outputs, got))


def compare(got, want, where):
    """Raise one GradingError naming every gradient in `got` that differs from `want`.
    Tensor subclasses and torch function modes are switched off while comparing."""
    problems = []
    with torch._C.DisableTorchFunction():
        for name, ref in want.items():
            mine = got[name]
            if isinstance(mine, torch.Tensor):
                mine = torch.Tensor.as_subclass(mine, torch.Tensor)
            hint = diagnose(mine, ref, name, rtol=RTOL, atol=ATOL)
            if hint:
                problems.append(hint)
    if problems:
        raise GradingError(f'{where}:\n  ' + '\n  '.join(problems))


def check_cases(fn, cases, make_case, inputs, outputs, label):
    """For every case (a dict of settings), make_case(**case) gives fresh tensors and
    PyTorch's gradients; fn gets `inputs` and must return `outputs`. Whatever the notebook
    (or fn itself) replaced is put back first and after every call (call_student), and a
    passing check ends with a receipt line that the grader looks for."""
    put_back()
    for case in cases:
        values = make_case(**case)
        where = f'{label}, fresh batch with ' + ', '.join(f'{k}={v}' for k, v in case.items())
        got = call_student(fn, {k: values[k] for k in inputs}, outputs, where)
        compare(got, {k: values[k] for k in outputs}, where)
    passed(f'{label} on {len(cases)} fresh batches')


def passed(what):
    """The receipt a hidden check prints when it passes; the grader looks for it."""
    print(f'{RECEIPT}{what}')


def expect_grads(namespace, names):
    """The visible tests: every d<name> in the notebook matches PyTorch's <name>.grad."""
    problems = [diagnose(namespace.get('d' + k), namespace[k].grad, 'd' + k) for k in names]
    problems = [p for p in problems if p]
    if problems:
        raise GradingError('\n'.join(problems))
    print(f'd{names[0]} matches' if len(names) == 1 else f'all {len(names)} gradients match', 'PyTorch on this batch')


guard_kit()  # last, so that this module's own functions are remembered too
