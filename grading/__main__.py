"""Grade a class: python -m grading [SUBMISSIONS] --out grades --jobs 2   (make grade)

Every student is graded in a process and folders of their own (grading/worker.py), JOBS at a
time, their code in a sandboxed judge that sees neither OUT nor the submissions. Only this
process writes the class gradebook, one student after the other. Without SUBMISSIONS it
grades a demo class made from the kit's own notebooks (grading/demo.py).
"""
import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

import checks
import grading
from grading import demo, intake, report, sandbox
from grading.course import assignment_name, make_template
from grading.gradebook import prepare, record

FORKS = multiprocessing.get_context('forkserver')
# what every worker imports, once: torch with the checks (inputs and verdicts), nbconvert and nbgrader's
# template (the feedback), the dataset
FORKS.set_forkserver_preload(['grading.worker', 'grading.preload', 'torch', *checks.MODULES])


def parse():
    ap = argparse.ArgumentParser(prog='python -m grading', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('submissions', nargs='?', help='folder of submissions: one subfolder per student '
                    'and/or zip_collect archives (default: grade a demo class)')
    ap.add_argument('--out', default='grades', help='output folder (default: grades)')
    ap.add_argument('--jobs', type=int, default=os.cpu_count() or 1, help='students graded at once')
    ap.add_argument('--timeout', type=int, default=300, help='seconds one cell may run (default 300)')
    ap.add_argument('--notebook-timeout', type=int, default=1200, help='seconds one notebook may run (default 1200)')
    ap.add_argument('--memory-limit', type=int, default=2048, help="MB of memory for a student's sandbox, its "
                    'processes and RAM folders together (default 2048)')
    ap.add_argument('--collect-regexp', default=intake.DEFAULT_REGEXP, help='how zip_collect finds student and '
                    'notebook in archived paths (its named_regexp; default: one archive per student, named after them)')
    ap.add_argument('--assignment', help='assignment name (default: the one folder in solutions/)')
    ap.add_argument('--notebooks', help='grade only these notebooks, by name, comma-separated '
                    '(e.g. 01_atomic_backprop for the first week; default: all of them)')
    ap.add_argument('--db-url', help="record the scores in this nbgrader gradebook (SQLAlchemy URL, say the course's "
                    'PostgreSQL one), which holds the assignment already, instead of a fresh OUT/gradebook.db')
    ap.add_argument('--no-sandbox', action='store_true', help='grade without bubblewrap (every student\'s code '
                    'then runs with your permissions: only for code you trust)')
    ap.add_argument('--keep-work', action='store_true', help='keep the scratch course folders (OUT/work)')
    return ap.parse_args()


def failed(job, text):
    return dict(student=job['student'], scores={}, problems=[dict(text=f'{text}; scored 0')])


def run_worker(job, deadline):
    """One student's result from grading.worker, forked from a server that has torch and nbgrader
    imported; stopped after `deadline` s (its sandbox dies with it: --die-with-parent)."""
    try:
        course = Path(job['course'])  # the worker's own folder; the sandbox never sees it
        course.mkdir(parents=True)
        proc = FORKS.Process(target=grading.work, args=(job,))
        proc.start()
        proc.join(deadline)
        if proc.is_alive():
            proc.kill()
            proc.join()
            return failed(job, f'grading this student took longer than {deadline} s and was stopped')
        if (course / 'result.json').exists():
            return json.loads((course / 'result.json').read_text())
        lines = [ln for ln in (course / 'worker.log').read_text(errors='replace').splitlines() if ln.strip()]
        return failed(job, f'grading failed ({lines[-1] if lines else f"exit code {proc.exitcode}"})')
    except Exception as e:  # the grader's own trouble costs this student only
        return failed(job, f'grading failed ({type(e).__name__}: {e})')


def keep_outputs(out, home, student):
    """feedback/, autograded/ and submitted/ of one student, from the worker's folders into OUT."""
    for kind in ('feedback', 'autograded', 'submitted'):
        shutil.rmtree(out / kind / student, ignore_errors=True)
        if (home / 'course' / kind / student).is_dir():
            shutil.copytree(home / 'course' / kind / student, out / kind / student, symlinks=True)


def main():
    args = parse()
    if args.no_sandbox:
        sandbox.warn_unsandboxed()
    elif why := sandbox.missing():
        raise SystemExit(f'cannot grade safely: {why}. Each student\'s code runs in a bubblewrap sandbox; '
                         f'install it ({sandbox.INSTALL}), or grade code you trust with --no-sandbox '
                         "(make grade GRADE_FLAGS=--no-sandbox)")
    warnings.filterwarnings('ignore', module='sqlalchemy')  # nbgrader's API is chatty
    warnings.filterwarnings('ignore', message='Object of type')
    bin_dir = str(Path(sys.executable).parent)  # nbgrader finds alembic on PATH
    os.environ['PATH'] = bin_dir + os.pathsep + os.environ.get('PATH', '')
    out = Path(args.out).resolve()
    work = out / 'work'
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    name = args.assignment or assignment_name()
    only = [n.strip().removesuffix('.ipynb') for n in (args.notebooks or '').split(',') if n.strip()]
    assignment = make_template(work / 'template', name, only)
    if stale := assignment.stale_release():
        print(f'warning: notebooks/{name}/ is not what the solutions release now ({", ".join(stale)}): '
              'run `make release` if students should get the current version', file=sys.stderr)
    if args.submissions:
        submissions = Path(args.submissions)
    else:
        submissions = demo.build(out / 'demo_submissions', assignment)
        # a demo need not train notebook 4 for the full 200,000 steps five times over
        os.environ.setdefault('BPN_STEPS', str(demo.STEPS))
        print(f'demo class: notebook 4 trains for BPN_STEPS={os.environ["BPN_STEPS"]} steps', file=sys.stderr)
    students, trouble = intake.find_students(submissions, work, name, args.collect_regexp)
    print(f'grading {len(students)} students from {submissions} ({len(assignment.notebooks)} notebooks, '
          f'{report.fmt(assignment.total)} points) with {args.jobs} at a time', file=sys.stderr)

    db_url = prepare(args.db_url, out, assignment)
    deadline = len(assignment.notebooks) * (args.notebook_timeout + 60) + 180
    cgroups, why = sandbox.parent_cgroups() if not args.no_sandbox else ({}, [])
    for line in why:
        print(f'warning: {line}: a student\'s sandbox is graded without that limit', file=sys.stderr)
    job = dict(template=str(work / 'template'), assignment=name, timeout=args.timeout, out=str(out),
               notebook_timeout=args.notebook_timeout, memory_mb=args.memory_limit, sandbox=not args.no_sandbox,
               cgroups={k: str(v) for k, v in cgroups.items()})
    results, started = [], time.monotonic()
    try:  # every student through a worker, JOBS at a time; each result recorded as it comes
        with ThreadPoolExecutor(max(args.jobs, 1)) as pool, \
                tqdm(total=len(students), unit='student', desc='grading', file=sys.stderr) as bar:
            todo = {pool.submit(run_worker, dict(job, student=s, folder=str(f), course=str(work / 'students' / s)),
                                deadline): s for s, f in students.items()}
            for done in as_completed(todo):
                results.append(done.result())
                record(db_url, assignment, results[-1])
                keep_outputs(out, work / 'students' / todo[done], todo[done])
                bar.set_postfix_str(todo[done])
                bar.update()
    finally:
        sandbox.remove_cgroups(cgroups)
    seconds = time.monotonic() - started
    by_student = {r['student']: r for r in results}
    for p in trouble:  # from collecting archives: a line for a graded student, or a student with no grade
        if p['student'] not in by_student:
            results.append(by_student.setdefault(p['student'], dict(student=p['student'], scores={}, problems=[])))
            record(db_url, assignment, results[-1])
        by_student[p['student']]['problems'].append(p)

    report.write_csv(out / 'grades.csv', assignment, results)
    report.plot(out / 'summary.png', assignment, results)
    table = report.write_problems(out, report.problem_rows(assignment, results))
    common = report.write_mistakes(out, assignment, results)  # mistakes.csv, mistakes.png, the top 3
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    graded = max(len(students), 1)
    print(f'\ngraded {len(students)} students in {seconds:.0f} s: {seconds / graded:.1f} s per student, '
          f'{60 * graded / seconds:.1f} per minute with {args.jobs} at a time')
    print(f'grades      {out / "grades.csv"}\nsummary     {out / "summary.png"}\n'
          f'feedback    {out / "feedback"}/<student>/{name}/*.html\n'
          f'gradebook   {db_url}\nmistakes    {out / "mistakes.png"}, {out / "mistakes.csv"}\n{common}\n'
          f'problems    ({out / "problems.txt"})\n{table}', end='')


if __name__ == '__main__':
    main()
