"""What every graded check shares. A check is a Spec: `cases(seed)` makes fresh float64 inputs,
`run(answer, inputs)` runs the student's answer on one of them (in the student's kernel) and
returns plain data, `judge(inputs, outputs)` says whether that data is right (in the grader's
own process, from its own inputs). `expect_fresh` runs the three in the kernel on one public
case: the visible check that predicts the grade."""
import contextlib
import dis
import io
import types
import warnings
from contextlib import contextmanager

import torch

from helpers import ATOL64, RTOL64, diagnose

PUBLIC_SEED = 20261128  # the visible case, and the cases hand_in judges when nothing grades it
NOTEBOOK_SIZES = {27, 10, 3, 30, 32, 64, 200}  # vocabulary, n_embd, block_size, fan-in, batch, widths
MAX_TEXT = 400


class GradingError(AssertionError):
    pass


AUTOGRAD_OFF = 'autograd is switched off while grading: compute this gradient by hand, without .backward() or torch.autograd'


def _refuse(tensor):
    raise RuntimeError(AUTOGRAD_OFF)


@contextmanager
def autograd_off():
    """float64 by default, no graph, and the autograd engine refuses every operation that
    would save a tensor for a backward pass, even under torch.enable_grad(). Defence in
    depth only: the verdict is reached outside the kernel, and the audit names autograd."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad(), torch.autograd.graph.saved_tensors_hooks(_refuse, _refuse):
            yield
    finally:
        torch.set_default_dtype(dtype)


def plain(value, depth=0):
    """value as data torch.load(weights_only=True) reads back: tensors (no subclass, no
    graph), numbers, strings, None, lists and dicts of those; anything else is named."""
    if isinstance(value, torch.Tensor):
        with torch._C.DisableTorchFunction(), torch.no_grad():  # no graph node: the judge counts them
            t = torch.Tensor.as_subclass(value, torch.Tensor).detach()
            if t.layout != torch.strided or t.device.type != 'cpu' or t.is_complex():
                return {'not_plain': f'a {t.layout} {t.dtype} tensor on {t.device}'}
            return t.clone().contiguous()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value[:MAX_TEXT] if isinstance(value, str) else value
    if isinstance(value, (list, tuple)) and depth < 3:
        return [plain(v, depth + 1) for v in value[:1000]]
    return {'not_plain': type(value).__name__}


def notebook_globals(fn, seen=None):
    """The notebook's data (not modules, functions or classes) that fn reads as globals,
    following the notebook's own functions that fn calls: ['n = 32', 'bndiff2: a tensor (32, 64)']."""
    seen = set() if seen is None else seen
    code, names = getattr(fn, '__code__', None), []
    if code is None or code in seen:
        return names
    seen.add(code)
    space = getattr(fn, '__globals__', {})
    codes = [code]
    while codes:
        c = codes.pop()
        codes += [k for k in c.co_consts if isinstance(k, types.CodeType)]
        for ins in dis.get_instructions(c):
            if ins.opname not in ('LOAD_GLOBAL', 'LOAD_NAME') or ins.argval not in space:
                continue
            value = space[ins.argval]
            if isinstance(value, types.FunctionType) and value.__globals__ is space:
                names += notebook_globals(value, seen)
            elif isinstance(value, torch.Tensor):
                names.append(f'{ins.argval}: a tensor of shape {tuple(value.shape)}')
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                names.append(f'{ins.argval} = {value}')
            elif isinstance(value, (list, tuple, dict)):
                names.append(f'{ins.argval}: a {type(value).__name__}')
    return list(dict.fromkeys(names))


def call(fn, args, arg_names, returns, copy=True):
    """fn(*args) with autograd off, float64 by default and its printing swallowed, as plain
    data: {'values': {name: value}, 'shared': [[a, b]], 'changed': [arg], 'globals': [...]}
    or {'error': 'what went wrong'}. Never raises for anything fn does."""
    if not callable(fn):
        return {'error': f'expected a function, got {type(fn).__name__}'}
    given = [_copy(a) for a in args] if copy else args
    quiet = io.StringIO()  # what the function prints is not graded (and stderr costs the cell)
    try:
        with autograd_off(), warnings.catch_warnings(), contextlib.redirect_stdout(quiet), \
                contextlib.redirect_stderr(quiet):
            warnings.simplefilter('ignore')
            got = fn(*given)
    except NotImplementedError:
        return {'error': 'NotImplementedError: not written yet'}
    except (Exception, SystemExit) as e:
        return {'error': f'{type(e).__name__}: {e}'[:MAX_TEXT], 'globals': notebook_globals(fn)}
    if len(returns) == 1:
        got = (got,)
    if not isinstance(got, (tuple, list)) or len(got) != len(returns):
        what = f'{type(got).__name__} of {len(got)}' if isinstance(got, (tuple, list)) else type(got).__name__
        return {'error': f'it should return {len(returns)} values ({", ".join(returns)}), got a {what}'}
    tensors = {k: v for k, v in zip(returns, got) if isinstance(v, torch.Tensor)}
    shared = [[a, b] for i, a in enumerate(tensors) for b in list(tensors)[i + 1:]
              if _storage(tensors[a]) is not None and _storage(tensors[a]) == _storage(tensors[b])]
    changed = [name for name, a, b in zip(arg_names, args, given) if copy and isinstance(a, torch.Tensor)
               and not (a.shape == b.shape and torch.equal(a, b))]
    return {'values': {k: plain(v) for k, v in zip(returns, got)}, 'shared': shared, 'changed': changed,
            'globals': notebook_globals(fn)}


def _copy(a):
    if isinstance(a, torch.Tensor):
        return a.clone()
    return [_copy(x) for x in a] if isinstance(a, (list, tuple)) else a


def _storage(t):
    try:
        return t.untyped_storage().data_ptr()
    except Exception:
        return None


def roundtrip(outputs):
    """outputs as the grader reads them: through torch.save and torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(outputs, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ---------------------------------------------------------------- judging

def describe_sizes(sizes):
    words = {'n': 'n', 'n_hidden': 'hidden width', 'width': 'width', 'vocab_size': 'vocabulary',
             'n_embd': 'n_embd', 'block_size': 'block_size', 'lr': 'lr', 'scale': 'logit scale'}
    return ', '.join(f'{words.get(k, k)} {v}' for k, v in sizes.items() if k in words)


def explain_error(error, outputs, sizes):
    """A sentence for an exception the student's function raised on this case."""
    where = describe_sizes(sizes)
    if error.startswith('NotImplementedError') or 'not written yet' in error:
        return 'not written yet' + (' (it raises NotImplementedError)' if error.startswith('NotImpl') else ' (still None)')
    if 'autograd is switched off' in error or 'saved tensors default hooks' in error:
        return 'it calls autograd, which is switched off while grading: compute the gradients by hand'
    if 'dtype' in error or 'scalar type' in error or ('Float' in error and 'Double' in error):
        return (f'it raised {error!r}: a float32 cast (.float(), torch.float32) met the float64 '
                f'inputs the grader uses; keep the inputs\' dtype (e.g. .to(x.dtype) or .type_as(x))')
    used = (outputs or {}).get('globals') or []
    if used:
        return f'it raised {error!r} on a batch with {where}; it reads the notebook\'s {_listed(used)}: use the function\'s arguments'
    if any(w in error for w in ('size', 'shape', 'dimension', 'index', 'out of bounds', 'match')):
        return (f'it raised {error!r} on a batch with {where}: a size typed into the function '
                '(27, 10, 32, 64, ...)? Take every size from the tensors\' shapes')
    return f'it raised {error!r} on a batch with {where}'


def _listed(used):
    return ('global ' if len(used) == 1 else 'globals ') + '; '.join(used)


def judge_values(returns, want, outputs, sizes, extra=None, first_wrong=False):
    """None if outputs['values'] match `want` (float64, RTOL64/ATOL64), else one sentence
    naming what is wrong and, where it can tell, why: a notebook global, a hard-coded size,
    a dtype cast, two gradients sharing storage, an input changed in place.
    extra(name, got) may name a known mistake for a wrong value."""
    if not isinstance(outputs, dict):
        return 'it handed in nothing readable'
    if 'error' in outputs:
        return explain_error(str(outputs['error'])[:MAX_TEXT], outputs, sizes)
    values = outputs.get('values')
    if not isinstance(values, dict):
        return 'it handed in nothing readable'
    if returns and all(values.get(name) is None for name in returns):
        return 'not written yet (still None)'
    problems, wrong = [], []
    for name in returns:
        got, ref = values.get(name), want[name]
        hint = _value_problem(name, got, ref, sizes)
        if hint:
            why = extra(name, got) if extra and isinstance(got, torch.Tensor) and got.shape == ref.shape else None
            problems.append(f'{name} is wrong: {why}' if why else hint)
            wrong.append(name)
    if not problems:
        return None
    causes = []
    used = outputs.get('globals') or []
    if used:
        causes.append(f'it reads the notebook\'s {_listed([str(u)[:80] for u in used[:4]])}, which do not '
                      'belong to this batch: use the function\'s arguments and take sizes from their shapes')
    pairs = [p for p in outputs.get('shared') or [] if isinstance(p, list) and set(map(str, p)) & set(wrong)]
    for a, b in pairs[:2]:
        causes.append(f'{a} and {b} share their storage, so an in-place += on one changed the other: '
                      f'make it a copy first (e.g. {b} = {a}.clone())')
    changed = outputs.get('changed') or []
    if changed:
        causes.append(f'it changed its input {", ".join(map(str, changed[:3]))} in place: work on a copy (.clone())')
    head = f'on a fresh float64 batch with {describe_sizes(sizes)}: ' if sizes else ''
    if first_wrong and len(wrong) > 1:
        head += f'{len(wrong)} gradients are wrong; in backward order the first is {wrong[0]}, so look there first. '
    text = head + ' '.join(problems[:2]) + (f' (and {len(problems) - 2} more)' if len(problems) > 2 else '')
    return text + (' Likely cause: ' + '; '.join(causes) + '.' if causes else '')


def _value_problem(name, got, ref, sizes):
    if isinstance(got, dict) and 'not_plain' in got:
        return f'{name} is {got["not_plain"]}, not a tensor.'
    if got is None:
        return f'{name} is None: not written yet, or the function forgot to return it.'
    if not isinstance(got, torch.Tensor):
        return f'{name} is a {type(got).__name__}, not a tensor.'
    if got.shape != ref.shape:
        hint = diagnose(got, ref, name)
        if set(got.shape) & NOTEBOOK_SIZES - set(ref.shape) - set(sizes.values()):
            hint += (f' Its shape holds a size of the notebook\'s batch, not of this one ({describe_sizes(sizes)}): '
                     'a hard-coded size? Take every size from the tensors\' shapes.')
        return hint
    if ref.is_floating_point() and got.dtype != ref.dtype:
        return (f'{name} came back as {got.dtype}, not {ref.dtype}: a cast in your function (.float()?) '
                'throws away precision; keep the inputs\' dtype.')
    if _close(got, ref):
        return None
    return diagnose(got, ref, name, rtol=RTOL64, atol=ATOL64) or f'{name} differs from PyTorch.'


def _close(got, ref):
    """allclose with RTOL64/ATOL64, from elementary operations."""
    with torch._C.DisableTorchFunction():
        got = torch.Tensor.as_subclass(got, torch.Tensor)
        return bool(((got - ref).abs() <= ATOL64 + RTOL64 * ref.abs()).all())


class Spec:
    """One graded cell. Subclasses set gid, title, answer (what is handed in) and define
    cases(seed), run(answer, inputs) and judge(inputs, outputs)."""
    gid = title = answer = ''

    def judge(self, inputs, outputs):
        try:
            return self.verdict(inputs, outputs)
        except Exception as e:  # malformed outputs: a wrong answer, never a crash
            return f'what it handed in could not be judged ({type(e).__name__}: {str(e)[:200]})'

    def visible_case(self):
        return self.cases(PUBLIC_SEED, visible=True)[0]


class FunctionSpec(Spec):
    """A graded function: arguments `args` (passed in this order), results `returns`.
    make(g, **size) draws a case; reference(case) gives the right results (autograd, float64)."""

    def __init__(self, gid, title, answer, args, returns, sizes, visible, make, reference, mistake=None,
                 order=None):
        self.gid, self.title, self.answer = gid, title, answer
        self.args, self.returns, self.sizes, self.visible = args, returns, sizes, visible
        self.make, self.reference, self.mistake = make, reference, mistake
        self.order = order  # judge the results in this order (backward order), naming the first wrong one

    def cases(self, seed, visible=False):
        """Fresh inputs from the seed alone, one per size; never holding the answers themselves
        (the kernel can read the inputs file)."""
        g = torch.Generator().manual_seed(seed)
        out = []
        for size in [self.visible] if visible else self.sizes:
            case = {k: v for k, v in self.make(g, **size).items() if k not in self.returns}
            out.append(dict(case, sizes=size))
        return out

    def run(self, answer, inputs):
        try:
            return call(answer, [inputs[a] for a in self.args], self.args, self.returns)
        except Exception as e:  # the kit's own slip must not stop the hand-in
            return {'error': f'{type(e).__name__}: {e}'[:MAX_TEXT]}

    def verdict(self, inputs, outputs):
        want = self.reference(inputs)
        extra = (lambda name, got: self.mistake(inputs, name, got)) if self.mistake else None
        return judge_values(self.order or self.returns, want, outputs, inputs.get('sizes', {}), extra,
                            first_wrong=bool(self.order))


def judged(spec, answer, case):
    """spec's verdict on `answer` for one case, as the grader would reach it."""
    try:
        outputs = roundtrip(spec.run(answer, case))
    except Exception as e:
        return f'what it handed in could not be saved ({type(e).__name__}: {str(e)[:200]})'
    return spec.judge(case, outputs)


def expect_fresh(gid, answer):
    """The visible check: `answer` on one fresh float64 case of other sizes, judged as the
    grader judges it. Raises with the cause when it is wrong."""
    import checks
    spec = checks.spec(gid)
    case = spec.visible_case()
    verdict = judged(spec, answer, case)
    if verdict:
        raise GradingError(f'{spec.title}: {verdict}')
    sizes = describe_sizes(case.get('sizes', {}))
    print(f'{spec.title}: right' + (f', also on a fresh float64 batch with {sizes}, as the grader will run it' if sizes else ''))


def expect_grads(namespace, names):
    """The visible test on the notebook's own batch: every d<name> matches PyTorch's <name>.grad."""
    problems = []
    for k in names:
        mine = namespace.get('d' + k)
        hint = 'not written yet (still None)' if mine is None else diagnose(mine, namespace[k].grad, 'd' + k)
        if hint and mine is None:
            hint = f'd{k} is {hint}'
        if hint and isinstance(mine, torch.Tensor):
            twins = [f'd{j}' for j in names if j != k and isinstance(namespace.get('d' + j), torch.Tensor)
                     and _storage(namespace['d' + j]) == _storage(mine)]
            if twins:
                hint += (f' It shares its storage with {", ".join(twins)}, so an in-place += on one changed the '
                         f'other: make it a copy first (.clone()).')
        problems.append(hint)
    problems = [p for p in problems if p]
    unwritten = [f'd{k}' for k in names if namespace.get('d' + k) is None]
    if problems and len(unwritten) == len(names):
        raise GradingError(f'not written yet: {", ".join(unwritten)} still None')
    if problems:
        raise GradingError('\n'.join(problems))
    print(f'd{names[0]} matches' if len(names) == 1 else f'all {len(names)} gradients match', 'PyTorch on this batch')

