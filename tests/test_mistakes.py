"""What the class got wrong: every problem line carries a cause, and `make grade` counts, for
each graded cell, how many students each cause cost points (mistakes.csv, mistakes.png, the
three most common at the end of the run). The causes are read from the sentences the checks
really write for each classic mistake, so a reworded sentence that loses its cause fails here."""
import csv
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import checks
from checks.causes import WORDS, cause_of
from checks.core import PUBLIC_SEED, judged
from grading import report
from tests.answers import solution
from tests.kit import ROOT, blank, edit, solved

BESSEL = ('stage3', 'torch.ones_like(bndiff) / (n - 1) * dbnvar', 'torch.ones_like(bndiff) / n * dbnvar')
ALIAS = ('stage3', 'dhprebn = dbndiff.clone()', 'dhprebn = dbndiff')
REPEATED = ('stage4', 'dC.index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))', 'dC[Xb] += demb')
SIZE_32 = ('stage1', 'n = logprobs.shape[0]', 'n = 32')


def verdict(number, gid, *edits, namespace=None, cells=(), seeds=(PUBLIC_SEED,)):
    """What the grader says of notebook `number`'s solution with (cell, old, new) edits, on
    the first of its fresh cases that comes out wrong (for each of `seeds`, a list)."""
    spec = checks.spec(gid)
    answer = solution(number, *cells, edits=edits, namespace=namespace)[spec.answer]
    if len(seeds) > 1:
        return [verdict_on(spec, answer, seed) for seed in seeds]
    return verdict_on(spec, answer, seeds[0])


def verdict_on(spec, answer, seed):
    for case in spec.cases(seed):
        said = judged(spec, answer, case)
        if said:
            return f'{spec.title}: {said}'
    raise AssertionError(f'{spec.gid}: every case is right')


AUTOGRAD = '    with torch.enable_grad():\n        x = W2.clone().requires_grad_()\n        (x * x).sum().backward()\n'
NB4 = ('forward', 'backward', 'train_step')

def slip(key, number, gid, *edits, **kwargs):
    """A student who makes the mistake of cause `key`: (cell, old, new) edits of notebook `number`."""
    return pytest.param(key, number, gid, edits, kwargs, id=f'{key}-{gid}')


CLASSIC = [
    slip('bessel', 1, 'test_stage3', BESSEL),
    slip('bessel', 3, 'test_step4', ('step4', 'dbnvar * 2 * bndiff / (n - 1)', 'dbnvar * 2 * bndiff / n')),
    slip('bessel', 3, 'test_step5', ('step5', '- n / (n - 1) * bnraw', '- bnraw')),
    slip('sigma-path', 3, 'test_step4', ('step4', ' + dbnvar * 2 * bndiff / (n - 1)', '')),
    slip('global-n', 1, 'test_stage1', ('stage1', '    n = logprobs.shape[0]\n', ''),
         namespace={'torch': torch, 'F': F, 'n': 32}),  # the notebook's n = 32, read inside the function
    slip('global-n', 3, 'test_step5', ('step5', 'n = bnraw.shape[0]', 'n = 32')),
    slip('hard-coded-size', 1, 'test_stage1', SIZE_32),
    slip('hard-coded-size', 1, 'test_stage1', ('stage1', 'num_classes=logits.shape[1]', 'num_classes=27')),
    slip('alias', 1, 'test_stage3', ALIAS),
    slip('float32', 1, 'test_stage2', ('stage2', 'dh = dlogits @ W2.T', 'dh = (dlogits @ W2.T).float()')),
    slip('float32', 1, 'test_stage2', ('stage2', 'dW2 = h.T @ dlogits', 'dW2 = h.T.float() @ dlogits')),
    slip('changed-input', 1, 'test_stage2', ('stage2', '    dh = dlogits', '    W2 *= 2\n    dh = dlogits')),
    slip('transposed', 1, 'test_stage2', ('stage2', 'dW2 = h.T @ dlogits', 'dW2 = dlogits.T @ h')),
    slip('missing-sum', 1, 'test_stage2', ('stage2', 'db2 = dlogits.sum(0)', 'db2 = dlogits')),
    slip('missing-sum', 3, 'test_step2', ('step2', '.sum(0, keepdim=True)', '')),
    slip('repeated-index', 1, 'test_stage4', REPEATED),
    slip('sign', 1, 'test_stage3', ('stage3', 'dbnvar = -0.5', 'dbnvar = 0.5')),
    slip('factor', 1, 'test_stage4', ('stage4', 'db1 = dhprebn.sum(0)', 'db1 = dhprebn.sum(0) / 2')),
    slip('not-written', 1, 'test_stage2', ('stage2', '    dh =', '    return (None,) * 4\n    dh =')),
    slip('not-written', 1, 'test_stage2', ('stage2', '    dh =', '    raise NotImplementedError\n    dh =')),
    slip('autograd', 1, 'test_stage2', ('stage2', '    dh = dlogits @ W2.T\n', AUTOGRAD + '    dh = dlogits @ W2.T\n')),
    slip('error', 1, 'test_stage2', ('stage2', '    dh = dlogits', "    raise ValueError('lost')\n    dh = dlogits")),
    slip('lr-typed', 4, 'test_no_grad_step', ('train_step', 'alpha=-lr', 'alpha=-0.1'), cells=NB4),
    slip(None, 1, 'test_stage1', ('stage1', '    dcounts += dcounts_sum\n', '')),  # a fan-out forgotten: no cause named
]


@pytest.mark.parametrize('key, number, gid, edits, kwargs', CLASSIC)
def test_each_classic_mistake_gets_its_cause_from_the_sentence_the_grader_writes(key, number, gid, edits, kwargs):
    said = verdict(number, gid, *edits, **kwargs)
    assert cause_of(said) == key, said


@pytest.mark.parametrize('key, number, gid, edits, kwargs', [c for c in CLASSIC if c.values[1] != 4])
def test_each_classic_mistake_gets_the_same_cause_whatever_fresh_inputs_the_grader_draws(key, number, gid, edits,
                                                                                      kwargs):
    """A class's inputs are drawn afresh at every grading: ten seeds, one cause."""
    said = verdict(number, gid, *edits, seeds=range(1, 11), **kwargs)
    assert [cause_of(s) for s in said] == [key] * 10, next(s for s in said if cause_of(s) != key)


def test_a_trained_network_above_the_bar_is_loss_bar():
    from helpers import init_params
    spec = checks.spec('test_trained')
    untrained = [p.detach() for p in init_params()]
    said = spec.judge(spec.cases(0, steps=2000)[0], {'values': {'parameters': untrained}})
    assert cause_of(said) == 'loss-bar', said


def test_the_likely_cause_beats_the_symptom_it_explains():
    # the alias makes dbndiff look striped (a sum's symptom); the grader's likely cause is the shared storage
    said = verdict(1, 'test_stage3', ALIAS)
    assert 'stripes' in said and cause_of(said) == 'alias'


def test_the_first_wrong_gradient_decides_the_symptom():
    # a forgotten fan-out first (no known cause), a transposed matrix second: not 'transposed'
    first = verdict(1, 'test_stage1', ('stage1', '    dcounts += dcounts_sum\n', ''))
    assert cause_of(first + ' dW2 is transposed: check the order of the matrix product (or use .T).') is None
    assert cause_of('dW2 is transposed: check the order. ' + first) == 'transposed'


def test_every_key_has_words_for_the_picture():
    keys = {p.values[0] for p in CLASSIC if p.values[0]} | {'loss-bar', 'missing', 'unreadable', 'held', 'timeout',
                                                    'memory', 'crashed', 'other'}
    assert keys <= set(WORDS)


# ---------------------------------------------------------------- counting, on hand-made results

NB1, NB3 = '01_atomic_backprop', '03_fused_batchnorm'
POINTS = {NB1: dict(test_stage1=3, test_stage3=3), NB3: dict(test_step4=2, test_step5=3)}
ASSIGNMENT = SimpleNamespace(total=11, notebooks={
    name: SimpleNamespace(points=points, graded=list(points), total=sum(points.values()),
                          labels={g: f'Heading of {g}' for g in points})
    for name, points in POINTS.items()})


def result(student, problems, lost=(), held=()):
    scores = {name: {g: 0.0 if g in lost else float(p) for g, p in points.items()} for name, points in POINTS.items()}
    return dict(student=student, scores=scores, problems=problems, held=list(held))


def line(notebook, text, stage=None, cell=None, cause=None):
    return dict(notebook=notebook, cell=cell or stage, stage=stage, text=text, cause=cause)


BESSEL_TEXT = "dbndiff2 has the right direction but is 31/32 = (n-1)/n times PyTorch's: that is Bessel's correction"


def test_a_student_counts_once_per_cause_where_it_cost_them_points():
    results = [
        result('amy', [line(NB1, BESSEL_TEXT, 'test_stage3'), line(NB1, BESSEL_TEXT, 'test_stage3')],
               lost=['test_stage3']),
        result('bo', [line(NB1, BESSEL_TEXT, 'test_stage3'), line(NB1, 'reads `.grad`', 'test_stage3')],
               lost=['test_stage3']),
        # a line on a cell that still scored full costs nothing
        result('cat', [line(NB1, BESSEL_TEXT, 'test_stage3'), line(NB1, 'printed too much', 'test_stage1')]),
        result('dan', [line(NB1, 'db1 differs from PyTorch', 'test_stage1')], lost=['test_stage1']),
    ]
    assert report.mistakes(ASSIGNMENT, results) == [
        (NB1, 'test_stage1', 'other', ['dan']),
        (NB1, 'test_stage3', 'bessel', ['amy', 'bo'])]  # bo's other line: the lost points have a known cause


NB3_ALL = ['test_step4', 'test_step5']


def test_a_missing_or_held_notebook_counts_once_for_the_whole_notebook():
    results = [
        result('eve', [line(NB3, '03_fused_batchnorm.ipynb is missing')], lost=NB3_ALL),
        result('fin', [line(NB3, 'reads the caller\'s frames', 'test_step4', cause='held'),
                       line(NB3, 'not written yet (still None)', 'test_step4')], lost=NB3_ALL, held=[NB3]),
        result('gil', [line(NB3, 'held for review', cause='held')], lost=NB3_ALL, held=[NB3]),
        # held for an autograd spelling the audit named
        result('ida', [line(NB3, 'uses torch.autograd', 'test_step4', cause='autograd')], lost=NB3_ALL,
               held=[NB3]),
        # notes on repairs cost nothing; a renamed copy graded in its place is no missing notebook
        result('hal', [line(NB3, 'made from an older release'),
                       line(NB3, '03_fused_batchnorm.ipynb is missing; graded 03-Copy1.ipynb in its place')]),
        # ... even when the grader marks it missing: the copy scored, and its slip counts
        result('jo', [line(NB3, '03_fused_batchnorm.ipynb is missing; graded 03-Copy1.ipynb in its place',
                           cause='missing'),
                      line(NB3, 'it matches the formula without the sigma^2 path', 'test_step4')], lost=['test_step4']),
    ]
    assert report.mistakes(ASSIGNMENT, results) == [
        (NB3, '(notebook)', 'held', ['fin', 'gil']), (NB3, '(notebook)', 'autograd', ['ida']),
        (NB3, '(notebook)', 'missing', ['eve']), (NB3, 'test_step4', 'sigma-path', ['jo'])]


def test_the_three_most_common_causes_name_their_graded_cell_and_put_slips_before_other():
    rows = [(NB1, 'test_stage1', 'other', ['a']), (NB1, 'test_stage3', 'bessel', ['a', 'b', 'c']),
            (NB3, '(notebook)', 'missing', ['d', 'e']), (NB3, 'test_step4', 'sigma-path', ['f'])]
    assert report.most_common(rows) == (f'most common: bessel 3 students ({NB1}/test_stage3), '
                                        f'missing 2 students ({NB3}/(notebook)), '
                                        f'sigma-path 1 student ({NB3}/test_step4)\n')
    assert report.most_common([]) == ''


def test_problem_lines_carry_the_cause_set_by_the_grader_or_read_from_their_sentence():
    r = result('amy', [line(NB1, BESSEL_TEXT, 'test_stage3'), line(NB1, 'autograd computed the answer', 'test_stage1',
                                                                    cause='autograd'),
                       line(NB1, 'something odd', 'test_stage1')], lost=['test_stage1', 'test_stage3'])
    assert [row[-1] for row in report.problem_rows(ASSIGNMENT, [r])] == ['bessel', 'autograd', 'other']


def test_grades_csv_marks_held_notebooks_for_review(tmp_path):
    report.write_csv(tmp_path / 'grades.csv', ASSIGNMENT, [result('amy', []), result('fin', [], held=[NB1, NB3])])
    rows = list(csv.DictReader(open(tmp_path / 'grades.csv')))
    assert [(r['student'], r['review']) for r in rows] == [('(out of)', ''), ('amy', ''), ('fin', f'{NB1} {NB3}')]


# ---------------------------------------------------------------- a class graded by the real entry point

CLASS = {  # student: their notebook 1 (None: handed in no notebook)
    'ann_right': lambda: solved(NB1),
    'bob_blank': lambda: blank(NB1),
    'cy_bessel': lambda: edit(solved(NB1), *BESSEL),
    'dee_bessel_repeated': lambda: edit(edit(solved(NB1), *BESSEL), *REPEATED),
    'eli_alias': lambda: edit(solved(NB1), *ALIAS),
    'fox_32': lambda: edit(solved(NB1), *SIZE_32),
    'gus_missing': None,
}
MISTAKES = [  # what mistakes.csv must say, row for row
    (NB1, '(notebook)', 'missing', '1', 'gus_missing'),
    (NB1, 'test_stage1', 'hard-coded-size', '1', 'fox_32'),  # a slip first, then work not done
    (NB1, 'test_stage1', 'not-written', '1', 'bob_blank'),
    (NB1, 'test_stage2', 'not-written', '1', 'bob_blank'),
    (NB1, 'test_stage3', 'bessel', '2', 'cy_bessel dee_bessel_repeated'),
    (NB1, 'test_stage3', 'alias', '1', 'eli_alias'),
    (NB1, 'test_stage3', 'not-written', '1', 'bob_blank'),
    (NB1, 'test_stage4', 'repeated-index', '1', 'dee_bessel_repeated'),
    (NB1, 'test_stage4', 'not-written', '1', 'bob_blank'),
]


@pytest.fixture(scope='module')
def graded(tmp_path_factory):
    import nbformat
    top = tmp_path_factory.mktemp('mistakes')
    for student, make in CLASS.items():
        (top / 'class' / student).mkdir(parents=True)
        if make:
            nbformat.write(make(), top / 'class' / student / f'{NB1}.ipynb')
    run = subprocess.run([sys.executable, '-m', 'grading', str(top / 'class'), '--out', str(top / 'out'),
                          '--jobs', '2', '--notebooks', NB1], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return dict(out=top / 'out', stdout=run.stdout)


def read(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_mistakes_csv_counts_every_student_under_the_cause_that_cost_them_points(graded):
    rows = read(graded['out'] / 'mistakes.csv')
    assert rows[0] == ['notebook', 'graded cell', 'cause', 'students', 'which students']
    assert [tuple(r) for r in rows[1:]] == MISTAKES


def test_problems_csv_gives_each_line_its_cause_in_a_last_column(graded):
    assert read(graded['out'] / 'problems.csv')[0] == ['student', 'notebook', 'cell', 'score', 'problem', 'cause']
    causes = {(r['student'], r['cell']): r['cause'] for r in csv.DictReader(open(graded['out'] / 'problems.csv'))}
    assert causes[('cy_bessel', 'test_stage3')] == 'bessel'
    assert causes[('eli_alias', 'test_stage3')] == 'alias'
    assert causes[('dee_bessel_repeated', 'test_stage4')] == 'repeated-index'
    assert causes[('gus_missing', '-')] == 'missing'
    assert {c for (s, _), c in causes.items() if s == 'bob_blank'} == {'not-written'}
    assert 'cause' in (graded['out'] / 'problems.txt').read_text().splitlines()[0].split()


def test_the_end_of_make_grade_names_the_three_most_common_causes(graded):
    assert (f'most common: bessel 2 students ({NB1}/test_stage3), missing 1 student ({NB1}/(notebook)), '
            f'hard-coded-size 1 student ({NB1}/test_stage1)\n') in graded['stdout']


def test_mistakes_png_is_drawn_beside_summary_png(graded):
    assert (graded['out'] / 'mistakes.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (graded['out'] / 'summary.png').exists()


# ---------------------------------------------------------------- the demo class

GRADED_BY = {'stage1': (1, 'test_stage1'), 'stage3': (1, 'test_stage3'), 'dlogits': (2, 'test_dlogits'),
             'step4': (3, 'test_step4'), 'step5': (3, 'test_step5')}
DEMO = {'cy_bessel': ['bessel'], 'di_fanout': [None], 'ed_batch32': ['hard-coded-size'],
        'gus_sigma': ['bessel', 'sigma-path', 'global-n'], 'hal_alias': ['hard-coded-size', 'alias', 'float32'],
        'ivy_float': ['float32', 'bessel', 'global-n']}


def test_the_demo_class_shows_causes_that_cost_several_students_points():
    from collections import Counter
    from grading.demo import SLIPS
    found = Counter()
    for student, slips in SLIPS.items():
        causes = []
        for cell, old, new in slips:
            number, gid = GRADED_BY[cell]
            causes.append(cause_of(verdict(number, gid, (cell, old, new), namespace={'torch': torch, 'F': F, 'n': 32})))
            found[gid, causes[-1]] += 1
        assert causes == DEMO[student], student
    assert sorted(k for k, count in found.items() if count > 1) == [
        ('test_dlogits', 'float32'), ('test_stage1', 'hard-coded-size'), ('test_stage3', 'bessel'),
        ('test_step5', 'global-n')]
