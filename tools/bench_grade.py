"""How fast `make grade` is: seconds per four-notebook submission with one sandboxed worker,
notebook 4 at BPN_STEPS=2000, and optionally the same for another copy of the kit (an
earlier commit, say), measured in turns on the same machine.

    python tools/bench_grade.py [--against /tmp/before] [--rounds 2]      (make bench-grade)

Each run is `python -m grading --out <tmp> --jobs 1` on the demo class (the solution, the
blank release, three slips, a renamed copy: every notebook runs to its end), by that kit's
own Python; the time is the grader's own figure for the grading, without the set-up.
"""
import argparse
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
STEPS = '2000'


def seconds_per_submission(kit):
    """(seconds per submission, students) of one run of the demo class in `kit`."""
    out = Path(tempfile.mkdtemp(prefix='bench-grade-'))
    try:
        env = dict(os.environ, BPN_STEPS=STEPS, PATH=f'{kit / ".venv" / "bin"}{os.pathsep}{os.environ["PATH"]}')
        run = subprocess.run([str(kit / '.venv' / 'bin' / 'python'), '-m', 'grading', '--out', str(out), '--jobs', '1'],
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
    args = ap.parse_args()
    kits = [KIT] + ([Path(args.against).resolve()] if args.against else [])
    print(f'demo class, one sandboxed worker, BPN_STEPS={STEPS}, {os.cpu_count()} cores, '
          f'load average before: {os.getloadavg()[0]:.1f}')
    best = {}
    for r in range(args.rounds):
        for kit in kits:
            per, students = seconds_per_submission(kit)
            best[kit] = min(best.get(kit, per), per)
            print(f'round {r + 1}  {str(kit):40s}  {students} submissions  {per:6.1f} s per submission')
    for kit in kits:
        print(f'{str(kit):40s}  best {best[kit]:.1f} s per submission')
    if args.against:
        print(f'{best[kits[1]] / best[kits[0]]:.2f}x as fast as {kits[1]} (load average after: {os.getloadavg()[0]:.1f})')


if __name__ == '__main__':
    main()
