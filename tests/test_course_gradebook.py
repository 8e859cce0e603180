"""A course's gradebook on a real PostgreSQL server: the assignment generated into it with
nbgrader's CLI, shards of the class graded into it at the same time by `python -m grading`
(what `make grade` runs), and a shard killed half-way and run again, which grades again the
students it had recorded. Every connection needs a password: a student's account gets nowhere."""
import csv
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from nbgrader.api import Gradebook

from tests.course import ENV, NB, PG, POINTS, WORK, Postgres, course_folder, run, write_class
from tests.kit import ASSIGNMENT, BIN, ROOT

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore:Object of type')

SHARD_A = dict(ann='right', bo='slip', cy='blank')
SHARD_B = dict(dee='slip', eli='right', fox='right')
SHARD_K = dict(gus='right', hal='blank', ida='slip')  # the one that gets killed


def grade(shard, out, db_url, popen=False):
    """A shard graded on its own machine: make grade SUBMISSIONS=shard JOBS=1 GRADE_FLAGS=--db-url ..."""
    cmd = ['make', '-s', '-C', ROOT, 'grade', f'SUBMISSIONS={shard}', f'OUT={out}', 'JOBS=1',
           f'NOTEBOOKS={NB}', f'GRADE_FLAGS=--db-url {db_url}']
    if popen:  # to be killed: what it leaves in TMPDIR (multiprocessing's folder) goes with the test's
        (out.parent / 'tmp').mkdir(exist_ok=True)
        return subprocess.Popen([str(c) for c in cmd], env=dict(ENV, TMPDIR=str(out.parent / 'tmp')),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return run(*cmd)


def cgroups_of_dead_runs():
    """The cgroup folders of grading runs whose process is gone (a run removes its own as it ends)."""
    return [p for kind in ('pids', 'memory') for p in Path('/sys/fs/cgroup', kind).glob('backprop-ninja-*')
            if not Path('/proc', p.name.removeprefix('backprop-ninja-')).exists()]


def export(course, db_url, to):
    """nbgrader export of the course gradebook: {student: [score, ...]} (a list, to see duplicates)."""
    run(BIN / 'nbgrader', 'export', f'--db={db_url}', f'--to={to}', '--log-level=WARN', cwd=course)
    rows = {}
    for row in csv.DictReader(to.open()):
        assert row['assignment'] == ASSIGNMENT
        rows.setdefault(row['student_id'], []).append(float(row['score']))
    return rows


def expected(*shards):
    return {student: [WORK[kind][1]] for shard in shards for student, kind in shard.items()}


def recorded(db_url):
    """Students with a submission in the gradebook, read straight from PostgreSQL."""
    with psycopg.connect(db_url.replace('postgresql+psycopg', 'postgresql')) as db:
        return [r[0] for r in db.execute('select student_id from submitted_assignment')]


@pytest.fixture(scope='module')
def course(tmp_path_factory, postgres):
    tmp = tmp_path_factory.mktemp('course_db')
    db_url = postgres.database()
    folder = course_folder(tmp / 'course', db_url)
    return dict(tmp=tmp, db_url=db_url, folder=folder,
                a=write_class(tmp / 'shard_a', SHARD_A), b=write_class(tmp / 'shard_b', SHARD_B))


@pytest.fixture(scope='module')
def two_shards(course):
    """Shards A and B graded at the same time into the same gradebook."""
    procs = [grade(course[s], course['tmp'] / f'out_{s}', course['db_url'], popen=True) for s in 'ab']
    logs = [p.communicate(timeout=900)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log
    return logs


def test_generate_assignment_works_on_a_fresh_postgresql_gradebook(course):
    """The documented command adds the course, the assignment and its four notebooks."""
    with Gradebook(course['db_url'], course_id='') as gb:
        assignment = gb.find_assignment(ASSIGNMENT)
        assert assignment.course_id == 'backprop_ninja'
        assert len(assignment.notebooks) == 4
        assert {c.name for c in gb.find_notebook(NB, ASSIGNMENT).grade_cells} >= set(POINTS)


def test_two_shards_at_once_leave_every_student_once_with_their_total(course, two_shards):
    assert export(course['folder'], course['db_url'], course['tmp'] / 'export.csv') == expected(SHARD_A, SHARD_B)


def test_nbgraders_gradebook_api_reads_the_same_scores_cell_by_cell(course, two_shards):
    slip_loses = {'test_stage3'}
    with Gradebook(course['db_url'], course_id='') as gb:
        assert sorted(s.id for s in gb.students) == sorted({**SHARD_A, **SHARD_B})
        for student, kind in {**SHARD_A, **SHARD_B}.items():
            for gid, points in POINTS.items():
                score = gb.find_grade(gid, NB, ASSIGNMENT, student).score
                full = kind == 'right' or (kind == 'slip' and gid not in slip_loses)
                assert score == (points if full else 0), (student, gid)


def test_a_shard_killed_half_way_and_run_again_loses_and_doubles_nothing(course, postgres):
    """Run again, the shard grades once more the students it had recorded before it was killed
    (one may hold zeros, killed between its rows): each ends once, with their right score."""
    db_url = postgres.database()
    course_folder(course['tmp'] / 'course_k', db_url)
    shard = write_class(course['tmp'] / 'shard_k', SHARD_K)
    out = course['tmp'] / 'out_k'
    proc = grade(shard, out, db_url, popen=True)
    while not recorded(db_url) and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the grading machine dies: make, the grader, its workers
    proc.wait()
    before = recorded(db_url)
    assert 1 <= len(before) < len(SHARD_K), f'the shard was not stopped half-way: {before}'
    grade(shard, out, db_url)
    assert export(course['folder'], db_url, course['tmp'] / 'export_k.csv') == expected(SHARD_K)
    assert sorted(recorded(db_url)) == sorted(SHARD_K)
    assert cgroups_of_dead_runs() == [], 'the run again did not remove the cgroups the killed one left'


def test_grading_into_a_gradebook_without_the_assignment_says_what_to_run_first(course, postgres):
    db_url = postgres.database()
    done = run(BIN / 'python', '-m', 'grading', course['a'], '--out', course['tmp'] / 'out_empty',
               '--notebooks', NB, '--db-url', db_url, cwd=ROOT, check=False)
    assert done.returncode != 0
    assert f'has no assignment {ASSIGNMENT}: run nbgrader generate_assignment {ASSIGNMENT} --db={db_url} first' \
        in done.stderr
    assert not recorded(db_url)


# ---------------------------------------------------------------- a password for every connection

# PostgreSQL's method that lets a connection in on its user name alone, as initdb and pg_hba spell it
NO_PASSWORD = re.compile(r'(-A\s*|--auth[a-z-]*[= ]\s*)trust\b|^\s*(local|host)\S*\s.*\strust\s*$', re.M)


def test_every_connection_to_the_gradebook_server_needs_a_password(postgres):
    rules = [line.split() for line in (postgres.data / 'pg_hba.conf').read_text().splitlines()
             if line.strip() and not line.lstrip().startswith('#')]
    assert rules and all(rule[-1] == 'scram-sha-256' for rule in rules), rules


def test_a_students_account_cannot_connect_to_the_gradebook(course, postgres, accounts):
    student = accounts(f'bpn{uuid.uuid4().hex[:4]}stu')
    database = course['db_url'].split('/')[-1].split('?')[0]
    for role in (Postgres.ROLE, 'postgres', student):
        tried = run(PG / 'psql', '-w', '-h', postgres.folder, '-U', role, '-d', database, '-c', 'select 1',
                    user=student, check=False)
        assert tried.returncode != 0 and 'no password supplied' in tried.stderr, (role, tried.stderr)
    wrong = run(PG / 'psql', '-w', '-h', postgres.folder, '-U', Postgres.ROLE, '-d', database, '-c', 'select 1',
                user=student, env=dict(ENV, PGPASSWORD='a-guess'), check=False)
    assert wrong.returncode != 0 and 'password authentication failed' in wrong.stderr, wrong.stderr


def test_the_readme_and_the_course_tests_never_let_a_connection_in_without_a_password():
    files = [ROOT / 'README.md', ROOT / 'tests' / 'course.py', *sorted((ROOT / 'tests').glob('test_course_*.py')),
             *sorted((ROOT / 'deploy').glob('*.py'))]
    for path in files:
        found = NO_PASSWORD.search(path.read_text())
        assert not found, f'{path.name}: {found.group(0)}'
