"""`make grade` on a class full of bad submissions: every student gets the score their
honest work deserves and a clear line for each problem, a student who reaches for the
grader's machinery is held for review with 0, and the good students in the same run get
full marks. The class is made here from the solutions and the release, and graded in ONE
run of the grading entry point, as the Makefile runs it."""
import csv
import json
import re
import subprocess
import sys
import zipfile

import nbformat
import pytest
from nbgrader.utils import compute_checksum

from grading.report import table
from tests.kit import ASSIGNMENT, ROOT, blank, cell, edit, solved

NB = '01_atomic_backprop'
# only loops that never end reach 20 s: a real cell of notebook 1 takes about a second
CELL_TIMEOUT, MEMORY_MB = 20, 1024


def at(nb, gid):
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get('nbgrader', {}).get('grade_id') == gid)


def added(nb, after, source):
    nb.cells.insert(at(nb, after) + 1, nbformat.v4.new_code_cell(source))
    return nb


# ---------------------------------------------------------------- slips in the work itself

def fanout_slip(nb):  # stage 1 forgets the second contribution to dcounts
    return edit(nb, 'stage1', '    dcounts += dcounts_sum\n', '')


def bias_slip(nb):  # stage 2 sums db2 over the wrong dimension
    return edit(nb, 'stage2', 'db2 = dlogits.sum(0)', 'db2 = dlogits.sum(1)')


def bessel_slip(nb):  # stage 3 divides the variance's gradient by n, not n - 1
    return edit(nb, 'stage3', 'torch.ones_like(bndiff) / (n - 1) * dbnvar', 'torch.ones_like(bndiff) / n * dbnvar')


def first_layer_slip(nb):
    return edit(nb, 'stage4', 'db1 = dhprebn.sum(0)', 'db1 = dhprebn.sum(1)')


# ---------------------------------------------------------------- the class

def older_release():
    """A solved notebook as an earlier release would have made it: a read-only cell worded
    differently (with that release's checksum) and a cell id that has since been renamed."""
    nb = solved(NB)
    data = edit(nb, 'data', "print(f'{len(words)} names", "print(f'{len(words)} words")
    data = cell(nb, 'data')
    data.metadata.nbgrader['checksum'] = compute_checksum(data)
    cell(nb, 'run_stage1').metadata.nbgrader['grade_id'] = 'run_cross_entropy'
    return nb


def deleted_cells():
    nb = solved(NB)
    for gid in ('imports', 'run_stage3', 'test_stage2'):
        del nb.cells[at(nb, gid)]
    return nb


def duplicated_cells():
    nb = solved(NB)
    for gid in ('stage3', 'test_stage1'):
        copy = nbformat.from_dict(json.loads(json.dumps(cell(nb, gid))))
        copy.id = f'copy-of-{gid}'
        nb.cells.insert(at(nb, gid), copy)
    return nb


def retyped_cells():
    nb = solved(NB)
    for gid, kind in (('stage4', 'markdown'), ('forward', 'raw')):
        c = cell(nb, gid)
        nb.cells[at(nb, gid)] = nbformat.from_dict(dict(cell_type=kind, id=c.id, metadata=c.metadata, source=c.source))
    return nb


def loops_forever():  # loops that never end, waiting: the time limit costs no CPU
    nb = edit(solved(NB), 'stage2', '    dh = dlogits @ W2.T', '    while True:\n        time.sleep(1)\n    dh = dlogits @ W2.T')
    cell(nb, 'stage2').source = 'import time\n\n' + cell(nb, 'stage2').source
    return added(nb, 'test_stage4', 'while True:\n    time.sleep(1)')


def eats_memory():
    return edit(solved(NB), 'stage3', '    dbnbias =', '    hog = []\n    while True:\n'
                '        hog.append(torch.ones(10_000_000))\n    dbnbias =')


def exits_and_crashes():
    nb = solved(NB)
    cell(nb, 'stage1').source += '\n\nimport sys\nsys.exit()'
    return edit(nb, 'stage4', '    dembcat =', '    import os\n    os._exit(1)\n    dembcat =')


def raises():
    nb = edit(solved(NB), 'stage1', 'dlogprobs[range(n), Yb]', 'dlogprobs[range(n + 1), Yb]')
    nb.cells.append(nbformat.v4.new_code_cell('ratio = 1 / 0'))
    return nb


def prints_too_much():
    nb = edit(solved(NB), 'stage2', '    dh = dlogits @ W2.T', '    for i in range(100_000):\n        print(i)\n'
              '    dh = dlogits @ W2.T')
    return added(nb, 'test_stage4', "print('x' * 5_000_000)")


def writes_html():  # a note of their own with a script and a link in it, and an error whose message has both
    nb = added(solved(NB), 'stage1',
               """raise ValueError('<img src="y" onerror="alert(2)"> [see](javascript:alert(3))')""")
    nb.cells.insert(at(nb, 'stage1') + 1, nbformat.v4.new_markdown_cell(
        'My note: <script>document.title = "pwned"</script><img src="x" onerror="alert(1)"> '
        '[my notes](javascript:alert(4))'))
    return nb


def redefines_cmp():
    nb = bias_slip(solved(NB))
    cell(nb, 'stage2').source += ("\n\ndef cmp(name, dt, t):\n"
                                  "    print(f'{name:15s} | exact: True  | approximate: True  | maxdiff: 0.0e+00')")
    return nb


def patches_checks():
    nb = bessel_slip(solved(NB))
    cell(nb, 'stage3').source += ('\n\nimport checks.atomic\nchecks.atomic.check_stage = lambda *args, **kwargs: None\n'
                                  'def expect_grads(*args, **kwargs):\n    pass')
    return nb


def skips_checks():
    nb = first_layer_slip(solved(NB))
    cell(nb, 'stage4').source += ('\n\nimport checks.core, checks.atomic\n'
                                  'checks.core.put_back = lambda: None\n'
                                  'checks.atomic.check_stage = lambda *args, **kwargs: None\n'
                                  'def expect_grads(*args, **kwargs):\n    pass')
    return nb


def patches_torch():
    nb = fanout_slip(solved(NB))
    cell(nb, 'stage1').source += ('\n\nimport builtins\n'
                                  'torch.allclose = lambda *args, **kwargs: True\n'
                                  'torch.testing.assert_close = lambda *args, **kwargs: None\n'
                                  'builtins.AssertionError = Warning')
    return edit(first_layer_slip(nb), 'stage4', '    dembcat =', '    torch.allclose = lambda *a, **k: True\n'
                '    torch.isclose = lambda a, b, **k: torch.ones_like(a, dtype=torch.bool)\n    dembcat =')


def silences_tracebacks():
    nb = bias_slip(solved(NB))
    cell(nb, 'stage2').source += ('\n\nimport os, sys\nip = get_ipython()\n'
                                  'ip.showtraceback = lambda *args, **kwargs: None\n'
                                  'ip.set_custom_exc((Exception,), lambda *args, **kwargs: None)\n'
                                  'sys.excepthook = lambda *args: None\n'
                                  "sys.stderr = open(os.devnull, 'w')")
    return nb


def copies_grad():
    return edit(solved(NB), 'stage2', 'dh = dlogits @ W2.T', 'dh = h.grad')


def hard_codes():
    nb = edit(solved(NB), 'stage1', 'n = logprobs.shape[0]', 'n = 32')
    pasted = ', '.join(f'{0.001 * k - 0.013:.4f}' for k in range(27))
    return edit(nb, 'stage2', 'db2 = dlogits.sum(0)', f'db2 = torch.tensor([{pasted}])')


def edits_locked():
    nb = fanout_slip(solved(NB))
    cell(nb, 'test_stage1').source = 'pass'
    cell(nb, 'forward').source += '\nloss = loss * 0'
    cell(nb, 'test_stage2').metadata.nbgrader['points'] = 20
    return nb


def write(folder, name, nb):
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)


# student: (notebooks to write, score per graded cell, what the problem lines must say)
FULL = dict(test_stage1=3, test_stage2=2, test_stage3=3, test_stage4=2)
CLASS = {
    'good_alice': (lambda: solved(NB), FULL, []),
    'good_bob_zip': (None, FULL, []),
    'blank_release': (lambda: blank(NB), dict(test_stage1=0, test_stage2=0, test_stage3=0, test_stage4=0),
                      ['test_stage1: stage 1 (cross-entropy): not written yet',
                       'test_stage2: stage 2 (second layer and tanh): not written yet',
                       'test_stage3: stage 3 (batchnorm): not written yet',
                       'test_stage4: stage 4 (first layer and embedding): not written yet']),
    'empty_file': (None, dict(FULL, **{k: 0 for k in FULL}), ['is an empty file']),
    'bad_json': (None, dict(FULL, **{k: 0 for k in FULL}), ['is not valid JSON']),
    'missing_notebook': (None, dict(FULL, **{k: 0 for k in FULL}), ['01_atomic_backprop.ipynb is missing']),
    'extra_notebook': (None, FULL, ['extra notebook scratch.ipynb is not part of the assignment']),
    'older_release': (older_release, FULL, ['made from an older release (run_cross_entropy, data differ '
                                            'from the current one); graded against the current release, '
                                            'with run_stage1 added']),
    'deleted_cells': (deleted_cells, FULL, ['deleted imports, test_stage2, run_stage3; put back from the release']),
    'duplicated_cells': (duplicated_cells, FULL, ['test_stage1, stage3 appear more than once; all copies ran']),
    'retyped_cells': (retyped_cells, FULL, ['forward, stage4 changed cell type; graded as in the release']),
    'loops_forever': (loops_forever, dict(FULL, test_stage2=0),
                      [f'run_stage2: stopped after {CELL_TIMEOUT} s, the time limit per cell',
                       f'added cell "while True:": stopped after {CELL_TIMEOUT} s, the time limit per cell']),
    'eats_memory': (eats_memory, dict(FULL, test_stage3=0),
                    [f'test_stage3: ran out of memory (the limit is {MEMORY_MB} MB)']),
    'exits_and_crashes': (exits_and_crashes, dict(FULL, test_stage4=0),
                          ['stage1: called sys.exit()', 'run_stage4: the process running the notebook died running '
                           'this cell (exit code 1']),
    'raises': (raises, dict(FULL, test_stage1=0),
               ["test_stage1: stage 1 (cross-entropy): it raised 'IndexError",
                'added cell "ratio = 1 / 0": ZeroDivisionError']),
    'prints_too_much': (prints_too_much, FULL, []),  # what cells print is dropped, at no cost
    'writes_html': (writes_html, FULL, ['ValueError: <img src="y" onerror="alert(2)">']),
    'redefines_cmp': (redefines_cmp, dict(FULL, test_stage2=0),
                      ['stage2: defines `cmp` again, which the kit provides', 'db2 has shape (32,) but should have (27,)']),
    'hard_codes': (hard_codes, dict(FULL, test_stage1=0, test_stage2=0),
                   ['stage2: has 28 numbers typed in', 'test_stage1: stage 1 (cross-entropy): it raised',
                    'test_stage2: stage 2 (second layer and tanh): on a fresh float64 batch with n 32']),
    'edits_locked': (edits_locked, dict(FULL, test_stage1=0),
                     ['edited the read-only forward, test_stage1; graded with the originals',
                      'changed the points of test_stage2 (20 instead of 2); put back',
                      'test_stage1: stage 1 (cross-entropy): on a fresh float64 batch with n 32']),
}


# student: (notebook, what the audit's lines must say): held for review, 0 until an instructor lifts it
NOTHING = {k: 0 for k in FULL}
HELD = {
    'patches_checks': (patches_checks, NOTHING, ["imports the grader's checks"]),
    'skips_checks': (skips_checks, NOTHING, ["imports the grader's checks"]),
    'patches_torch': (patches_torch, NOTHING, ['builtins']),
    'silences_tracebacks': (silences_tracebacks, NOTHING, ['traceback']),
    'copies_grad': (copies_grad, NOTHING, ['.grad']),
}


def make_class(folder):
    for student, (make, _, _) in (CLASS | HELD).items():
        if make is not None:
            write(folder / student, f'{NB}.ipynb', make())
    good = nbformat.writes(solved(NB)).encode()
    with zipfile.ZipFile(folder / 'good_bob_zip.zip', 'w') as z:  # zip_collect: one archive per student
        z.writestr(f'{NB}.ipynb', good)
        z.writestr(f'.ipynb_checkpoints/{NB}-checkpoint.ipynb', good)
    (folder / 'empty_file').mkdir()
    (folder / 'empty_file' / f'{NB}.ipynb').write_bytes(b'')
    (folder / 'bad_json').mkdir()
    (folder / 'bad_json' / f'{NB}.ipynb').write_bytes(good[:len(good) // 2])
    (folder / 'missing_notebook').mkdir()
    (folder / 'missing_notebook' / 'notes.txt').write_text('I ran out of time, sorry')
    write(folder / 'extra_notebook', f'{NB}.ipynb', solved(NB))
    write(folder / 'extra_notebook', 'scratch.ipynb', blank(NB))


@pytest.fixture(scope='module')
def graded(tmp_path_factory):
    """The class graded by one run of the entry point, as `make grade` runs it."""
    top = tmp_path_factory.mktemp('class')
    make_class(top / 'submissions')
    run = subprocess.run([sys.executable, '-m', 'grading', str(top / 'submissions'), '--out', str(top / 'grades'),
                          '--jobs', '2', '--timeout', str(CELL_TIMEOUT), '--notebook-timeout', '300',
                          '--memory-limit', str(MEMORY_MB), '--keep-work', '--notebooks', NB],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    out = top / 'grades'
    with open(out / 'grades.csv') as f:
        rows = list(csv.DictReader(f))
    with open(out / 'problems.csv') as f:
        problems = list(csv.DictReader(f))
    return dict(out=out, stdout=run.stdout, stderr=run.stderr, rows={r['student']: r for r in rows},
                problems=problems)


def lines_of(graded, student):
    return [f"{p['cell']}: {p['problem']}" for p in graded['problems'] if p['student'] == student]


def test_every_student_is_graded_once_with_the_points_each_column_is_out_of(graded):
    rows = graded['rows']
    assert set(rows) == set(CLASS) | set(HELD) | {'(out of)'}
    assert rows['(out of)'][f'{NB}/test_stage1'] == '3' and rows['(out of)']['total'] == '10'


@pytest.mark.parametrize('student', list(CLASS) + list(HELD))
def test_each_student_scores_what_their_honest_work_deserves(graded, student):
    _, expected, _ = (CLASS | HELD)[student]
    row = graded['rows'][student]
    assert {gid: float(row[f'{NB}/{gid}']) for gid in FULL} == expected
    assert float(row['total']) == sum(expected.values()) == float(row[NB])


@pytest.mark.parametrize('student', CLASS)
def test_each_problem_gets_one_clear_line_naming_what_was_wrong(graded, student):
    _, _, expected = CLASS[student]
    lines = lines_of(graded, student)
    for phrase in expected:
        assert any(phrase in line for line in lines), f'{student}: no line says {phrase!r}:\n' + '\n'.join(lines)
    assert len(lines) == len(expected), f'{student}: unexpected lines:\n' + '\n'.join(lines)


@pytest.mark.parametrize('student', HELD)
def test_a_student_who_reaches_for_the_graders_machinery_is_held_for_review_and_told_why(graded, student):
    lines = lines_of(graded, student)
    for phrase in HELD[student][2]:
        assert any(phrase in line for line in lines), f'{student}: no line says {phrase!r}:\n' + '\n'.join(lines)
    result = json.loads((graded['out'] / 'work' / 'students' / student / 'result.json').read_text())
    assert result['held'] == [NB]
    page = (graded['out'] / 'feedback' / student / ASSIGNMENT / f'{NB}.html').read_text()
    assert 'held for review' in page


def test_no_honest_student_is_held(graded):
    for student in CLASS:
        folder = graded['out'] / 'work' / 'students' / student / 'result.json'
        if folder.exists():
            assert json.loads(folder.read_text())['held'] == [], student


def test_the_formgrader_lists_held_notebooks_for_manual_grading_and_no_other(graded):
    from nbgrader.api import Gradebook
    with Gradebook(f'sqlite:///{graded["out"] / "gradebook.db"}') as gb:
        flagged = {s.id for s in gb.students
                   if any(g.needs_manual_grade for nb in gb.find_submission(ASSIGNMENT, s.id).notebooks for g in nb.grades)}
    assert flagged == set(HELD)


def test_feedback_shows_the_notebook_as_handed_in_with_the_verdict_in_each_graded_cell(graded):
    alice = (graded['out'] / 'feedback' / 'good_alice' / ASSIGNMENT / f'{NB}.html').read_text()
    assert alice.count('points: right') == 4 and '3 of 3 points: right' in alice
    slip = (graded['out'] / 'feedback' / 'hard_codes' / ASSIGNMENT / f'{NB}.html').read_text()
    assert '0 of 3 points: stage 1 (cross-entropy): it raised' in slip
    assert '<span class="mi">32</span>' in slip  # the answer as handed in: n = 32


def test_a_students_own_html_shows_on_the_feedback_page_as_text_and_never_runs(graded):
    """An instructor opens every page: a student's script must not run in their browser."""
    page = (graded['out'] / 'feedback' / 'writes_html' / ASSIGNMENT / f'{NB}.html').read_text()
    assert 'My note: &lt;script&gt;document.title' in page and '[my notes](javascript:alert(4))' in page
    assert '<script>document.title' not in page
    assert not re.search(r'<[^<>]*\sonerror\s*=', page)  # no tag of theirs, in a note or an error's message
    assert 'href="javascript' not in page  # and no link of theirs


def test_problem_lines_give_the_score_of_the_stage_or_notebook_they_cost(graded):
    scores = {(p['student'], p['cell']): p['score'] for p in graded['problems']}
    assert scores[('loops_forever', 'run_stage2')] == '0/2'
    assert scores[('exits_and_crashes', 'stage1')] == '3/3'  # sys.exit() after the answer costs nothing
    assert scores[('bad_json', '-')] == '0/10'
    assert scores[('deleted_cells', '-')] == '10/10'


def test_the_problem_table_is_printed_at_the_end(graded):
    rows = [(p['student'], p['notebook'], p['cell'], p['score'], p['problem'], p['cause']) for p in graded['problems']]
    assert graded['stdout'].endswith(table(rows))
    assert (graded['out'] / 'problems.txt').read_text() == table(rows)


def test_feedback_summary_and_the_class_gradebook_hold_every_student(graded):
    from nbgrader.api import Gradebook
    unreadable = {'empty_file', 'bad_json', 'missing_notebook'}
    for student in CLASS | HELD:
        html = graded['out'] / 'feedback' / student / ASSIGNMENT / f'{NB}.html'
        assert html.exists() == (student not in unreadable), student
    assert '(Score: 10.0 / 10.0)' in (graded['out'] / 'feedback' / 'good_bob_zip' / ASSIGNMENT / f'{NB}.html').read_text()
    assert (graded['out'] / 'summary.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with Gradebook(f'sqlite:///{graded["out"] / "gradebook.db"}') as gb:
        assert {s.id for s in gb.students} == set(CLASS) | set(HELD)
        for student, (_, expected, _) in (CLASS | HELD).items():
            assert gb.find_submission(ASSIGNMENT, student).score == sum(expected.values())


@pytest.mark.filterwarnings('ignore:Object of type')  # nbgrader's API, adding a submission
def test_scores_can_go_into_an_existing_course_gradebook(graded, tmp_path):
    """--db-url: what each student scored lands in a gradebook that already holds the assignment."""
    import shutil
    from nbgrader.api import Gradebook
    from grading.__main__ import record
    from grading.course import Assignment
    template = graded['out'] / 'work' / 'template'
    shutil.copy(template / 'gradebook.db', tmp_path / 'course.db')
    url = f'sqlite:///{tmp_path / "course.db"}'
    record(url, Assignment(template, ASSIGNMENT), dict(student='zoe', scores={NB: dict(FULL, test_stage3=1.5)}))
    with Gradebook(url) as gb:
        assert gb.find_submission(ASSIGNMENT, 'zoe').score == 8.5


def test_the_demo_class_holds_a_solution_a_blank_and_typical_slips(graded, tmp_path):
    from grading import demo
    from grading.course import Assignment
    made = demo.build(tmp_path / 'demo', Assignment(graded['out'] / 'work' / 'template', ASSIGNMENT))
    assert sorted(p.name for p in made.iterdir()) == ['ada_solution', 'ben_blank', 'cy_bessel', 'di_fanout',
                                                      'ed_batch32', 'fay_renamed', 'gus_sigma', 'hal_alias']
    # (ivy_float's slips are in notebooks 2 and 3, which this class does not grade)
    solution = nbformat.read(made / 'ada_solution' / f'{NB}.ipynb', as_version=4)
    assert solution.cells[at(solution, 'stage3')].source == cell(solved(NB), 'stage3').source
    slip = nbformat.read(made / 'cy_bessel' / f'{NB}.ipynb', as_version=4)
    assert [c.source for c in slip.cells] == [c.source for c in bessel_slip(solved(NB)).cells]


def hidden_lines():
    """The lines of notebook 1's hidden tests, as the instructor's solutions hold them."""
    found = []
    for c in nbformat.read(ROOT / 'solutions' / ASSIGNMENT / f'{NB}.ipynb', as_version=4).cells:
        if 'BEGIN HIDDEN TESTS' in c.source:
            block = c.source.split('### BEGIN HIDDEN TESTS')[1].split('### END HIDDEN TESTS')[0]
            found += [ln.strip() for ln in block.splitlines() if len(ln.strip()) > 12]
    return found


@pytest.mark.parametrize('student', ['raises', 'loops_forever', 'good_alice', 'patches_torch'])
def test_feedback_shows_every_problem_line_and_nothing_of_the_grading_machine(graded, student):
    import html
    page = (graded['out'] / 'feedback' / student / ASSIGNMENT / f'{NB}.html').read_text()
    for p in graded['problems']:
        if p['student'] == student:
            assert html.escape(p['problem'], quote=False) in page, p['problem']
    for path in (str(ROOT), str(graded['out']), sys.prefix, '/tmp/', '/root'):
        assert path not in page, path
    assert hidden_lines() and not any(html.escape(ln, quote=False) in page for ln in hidden_lines())
    assert 'No response.' not in page
    assert 'white-space: pre-wrap' in page and 'border-collapse' in page  # long hint lines wrap; tables ruled


def test_a_reply_out_of_turn_holds_the_notebook_for_review():
    """A reply to an earlier graded cell means something else wrote the one taken for it."""
    import checks
    from grading.worker import FORGED, judge_reply
    spec, job = checks.spec('test_stage3'), {'memory_mb': MEMORY_MB}
    assert judge_reply(spec, 'test_stage3', [], {'gid': 'test_stage2', 'outputs': []}, job) == (FORGED, False, 'held')
    assert judge_reply(spec, 'test_stage3', [], {'gid': None, 'failed': ('crashed', 'MemoryError', '')}, job).cause \
        == 'crashed'
