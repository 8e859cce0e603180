"""nbgrader's course cycle between real Unix accounts: the instructor releases through a real
exchange, each student fetches, works and submits as themselves, the instructor collects,
a grading machine runs `make grade` on the course's submitted/ into the PostgreSQL
gradebook, the instructor hands the feedback back, and each student fetches their own."""
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from tests.course import ENV, NB, WORK, run
from tests.kit import ASSIGNMENT, BIN, ROOT

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')

TAG = uuid.uuid4().hex[:4]  # account names of this run: bpn<tag><name>
# what each student hands in, in order: the last one counts
HAND_INS = dict(ann=['slip', 'right'], bo=['slip'], cy=['blank'])
SCORE = dict(ann=WORK['right'][1], bo=WORK['slip'][1], cy=WORK['blank'][1])


def user(name):
    return f'bpn{TAG}{name}'


@pytest.fixture(scope='module')
def cycle(postgres, accounts, traversable_root):
    base = Path(tempfile.mkdtemp(prefix='bpn-course-'))
    base.chmod(0o755)
    exchange, etc = base / 'exchange', base / 'etc'
    exchange.mkdir(mode=0o777)
    exchange.chmod(0o1777)
    etc.mkdir()
    shutil.copy(ROOT / 'deploy' / 'nbgrader_config.py', etc)
    env = dict(ENV, JUPYTER_CONFIG_PATH=str(etc), BPN_EXCHANGE=str(exchange))
    db_url = postgres.database()
    teacher = accounts(user('teach'))
    students = {name: accounts(user(name)) for name in HAND_INS}
    home = Path(f'/home/{teacher}')
    course = home / 'course'
    try:
        yield dict(base=base, env=env, exchange=exchange, db_url=db_url, teacher=teacher,
                   students=students, course=course, log=play(base, env, db_url, teacher, students, course))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def nbgrader(*args, user, cwd, env, check=True):
    return run(BIN / 'nbgrader', *args, user=user, cwd=cwd, env=env, check=check)


def play(base, env, db_url, teacher, students, course):
    """The cycle, command by command as the README's "A large course" gives it."""
    log = {}
    # the instructor's course folder: the kit's nbgrader_config.py and solutions
    run('mkdir', course, user=teacher, env=env)
    run('cp', ROOT / 'nbgrader_config.py', course, user=teacher, env=env)
    run('cp', '-r', ROOT / 'solutions', course, user=teacher, env=env)
    nbgrader('generate_assignment', ASSIGNMENT, f'--db={db_url}', user=teacher, cwd=course, env=env)
    nbgrader('release_assignment', ASSIGNMENT, user=teacher, cwd=course, env=env)
    for name, sid in students.items():
        home = Path(f'/home/{sid}')
        nbgrader('fetch_assignment', ASSIGNMENT, user=sid, cwd=home, env=env)
        for kind in HAND_INS[name]:
            work = base / f'{sid}.ipynb'  # written by root, copied over by the student
            nbformat.write(WORK[kind][0](), work)
            work.chmod(0o644)
            run('cp', work, home / ASSIGNMENT / f'{NB}.ipynb', user=sid, env=env)
            nbgrader('submit', ASSIGNMENT, user=sid, cwd=home, env=env)
            time.sleep(1.1)  # submissions are told apart by their timestamp
    log['collect'] = nbgrader('collect', ASSIGNMENT, user=teacher, cwd=course, env=env)
    # a grading machine (here root) grades the course's submitted/ into the gradebook
    log['grade'] = run('make', '-s', '-C', ROOT, 'grade', f'SUBMISSIONS={course / "submitted"}',
                       f'OUT={base / "grades"}', 'JOBS=2', f'NOTEBOOKS={NB}', f'GRADE_FLAGS=--db-url {db_url}', env=env)
    run('cp', '-r', base / 'grades' / 'feedback', course, user=teacher, env=env)
    log['release_feedback'] = nbgrader('release_feedback', ASSIGNMENT, user=teacher, cwd=course, env=env)
    for name, sid in students.items():
        log[f'fetch_feedback {name}'] = nbgrader('fetch_feedback', ASSIGNMENT, user=sid, cwd=f'/home/{sid}', env=env)
    return log


def test_each_student_fetched_the_released_notebooks(cycle):
    for sid in cycle['students'].values():
        fetched = sorted(p.name for p in (Path(f'/home/{sid}') / ASSIGNMENT).glob('*.ipynb'))
        assert fetched == sorted(p.name for p in (ROOT / 'notebooks' / ASSIGNMENT).glob('*.ipynb'))
        assert (Path(f'/home/{sid}') / ASSIGNMENT / f'{NB}.ipynb').owner() == sid


def test_collect_keeps_each_students_latest_submission(cycle):
    submitted = cycle['course'] / 'submitted'
    assert sorted(p.name for p in submitted.iterdir()) == sorted(cycle['students'].values())
    ann = nbformat.read(submitted / cycle['students']['ann'] / ASSIGNMENT / f'{NB}.ipynb', as_version=4)
    assert nbformat.writes(ann) == nbformat.writes(WORK['right'][0]())


def test_the_gradebook_holds_each_students_score_of_their_latest_submission(cycle):
    with Gradebook(cycle['db_url'], course_id='') as gb:
        for name, sid in cycle['students'].items():
            assert gb.find_submission(ASSIGNMENT, sid).score == SCORE[name], name


def test_each_student_fetches_their_own_feedback_with_their_score(cycle):
    for name, sid in cycle['students'].items():
        pages = list((Path(f'/home/{sid}') / ASSIGNMENT / 'feedback').glob(f'*/{NB}.html'))
        assert len(pages) == 1, (name, pages)
        assert pages[0].owner() == sid
        # the three students score 10, 7 and 0: the page's total says whose work it judged
        assert f'{NB} (Score: {SCORE[name]:.1f} / 10.0)' in pages[0].read_text(), name


def test_no_student_can_list_or_read_another_students_submission(cycle):
    ann, bo = cycle['students']['ann'], cycle['students']['bo']
    inbound = cycle['exchange'] / 'backprop_ninja' / 'inbound'
    assert any(p.name.startswith(f'{ann}+{ASSIGNMENT}+') for p in inbound.iterdir())
    listing = run('ls', inbound, user=bo, env=cycle['env'], check=False)
    assert listing.returncode != 0 and 'Permission denied' in listing.stderr
    # without the listing, the folder's name (student+assignment+timestamp to the microsecond)
    # cannot be found: a read of ann's notebook by pattern finds nothing
    read = run('bash', '-c', f'cat {inbound}/{ann}+{ASSIGNMENT}+*/{NB}.ipynb', user=bo, env=cycle['env'], check=False)
    assert read.returncode != 0 and 'No such file or directory' in read.stderr


def test_no_student_can_list_or_read_another_students_feedback(cycle):
    bo = cycle['students']['bo']
    feedback = cycle['exchange'] / 'backprop_ninja' / 'feedback'
    assert len(list(feedback.glob('*.html'))) == len(cycle['students'])
    listing = run('ls', feedback, user=bo, env=cycle['env'], check=False)
    assert listing.returncode != 0 and 'Permission denied' in listing.stderr
    read = run('bash', '-c', f'cat {feedback}/*.html', user=bo, env=cycle['env'], check=False)
    assert read.returncode != 0 and 'No such file or directory' in read.stderr

