"""How fast `make grade` is: seconds per four-notebook submission with one sandboxed worker,
notebook 4 at BPN_STEPS=2000, and optionally the same for another copy of the kit (an
earlier commit, say), measured in turns on the same machine.

    python tools/bench_grade.py [--students 4] [--against /tmp/before] [--rounds 2]   (make bench-grade)

The class is the demo's typical work (the solution and one-slip submissions, all four
notebooks), made once by this kit; each run is `python -m grading CLASS --jobs 1` by that
kit's own Python, and the time is the grader's own figure for the grading, without the set-up.
"""
import argparse
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
STEPS = '2000'
TYPICAL = ['ada_solution', 'cy_bessel', 'di_fanout', 'ed_batch32']


def make_class(folder, students):
    sys.path.insert(0, str(KIT))
    from grading import demo
    from grading.course import assignment_name, make_template
    made = demo.build(folder / 'demo', make_template(folder / 'template', assignment_name()))
    for i, kind in zip(range(students), itertools.cycle(TYPICAL)):
        shutil.copytree(made / kind, folder / 'class' / f'{kind}_{i:02d}')
    return folder / 'class'


def seconds_per_submission(kit, submissions):
    """(seconds per submission, students) of one run of `kit`'s grader on the class."""
    out = Path(tempfile.mkdtemp(prefix='bench-grade-'))
    try:
        env = dict(os.environ, BPN_STEPS=STEPS, PATH=f'{kit / ".venv" / "bin"}{os.pathsep}{os.environ["PATH"]}')
        run = subprocess.run([str(kit / '.venv' / 'bin' / 'python'), '-m', 'grading', str(submissions), '--out', str(out),
                              '--jobs', '1'],
                             cwd=kit, env=env, capture_output=True, text=True)
        found = re.search(r'graded (\d+) students in (\d+) s', run.stdout)
        if run.returncode or not found:
            raise SystemExit(f'{kit}: grading failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}')
        students = int(found.group(1))
        per = float(re.search(r'in \d+ s: ([\d.]+) s per student', run.stdout).group(1))
        return per, students
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--against', help='another copy of the kit (with its own .venv) to measure in turns')
    ap.add_argument('--rounds', type=int, default=1)
    ap.add_argument('--students', type=int, default=4)
    args = ap.parse_args()
    kits = [KIT] + ([Path(args.against).resolve()] if args.against else [])
    top = Path(tempfile.mkdtemp(prefix='bench-class-'))
    submissions = make_class(top, args.students)
    print(f'{args.students} typical submissions of all four notebooks, one sandboxed worker, BPN_STEPS={STEPS}, '
          f'{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.1f}')
    best = {}
    for r in range(args.rounds):
        for kit in kits:
            per, students = seconds_per_submission(kit, submissions)
            best[kit] = min(best.get(kit, per), per)
            print(f'round {r + 1}  {str(kit):40s}  {students} submissions  {per:6.1f} s per submission')
    for kit in kits:
        print(f'{str(kit):40s}  best {best[kit]:.1f} s per submission')
    if args.against:
        print(f'{best[kits[1]] / best[kits[0]]:.2f}x as fast as {kits[1]} (load average after: {os.getloadavg()[0]:.1f})')
    shutil.rmtree(top, ignore_errors=True)


if __name__ == '__main__':
    main()
