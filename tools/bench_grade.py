"""How fast `make grade` is: seconds per submission and submissions per minute, with 1 and
with 2 students graded at once, and with 1 without the sandbox (--no-sandbox, to see what
the sandbox costs), measured side by side in this one process on the same class.

    python tools/bench_grade.py [--students 8]      (make bench-grade)

The class is the demo's typical work, repeated: the solution and three one-slip
submissions, so every notebook runs to the end and no time limit is involved. The time
is the grading itself (sandbox, nbgrader autograde, the grader's verdicts, feedback,
gradebook), not the set-up.
"""
import argparse
import contextlib
import io
import itertools
import os
import shutil
import sys
import tempfile
from pathlib import Path

from grading import __main__ as grade
from grading import demo
from grading.course import assignment_name, make_template

TYPICAL = ['ada_solution', 'cy_bessel', 'di_fanout', 'ed_batch32']


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--students', type=int, default=8)
    args = ap.parse_args()
    os.environ['PATH'] = str(Path(sys.executable).parent) + os.pathsep + os.environ['PATH']
    os.environ.setdefault('BPN_STEPS', str(demo.STEPS))  # as the demo: notebook 4 trains briefly
    top = Path(tempfile.mkdtemp(prefix='bench-grade-'))
    try:
        assignment = make_template(top / 'template', assignment_name())
        made = demo.build(top / 'demo', assignment)
        kinds = [k for k in TYPICAL if (made / k).is_dir()]
        for i, kind in zip(range(args.students), itertools.cycle(kinds)):
            shutil.copytree(made / kind, top / 'class' / f'{kind}_{i:02d}')
        print(f'{args.students} submissions ({", ".join(kinds)}), {len(assignment.notebooks)} notebook(s), '
              f'BPN_STEPS={os.environ["BPN_STEPS"]}, {os.cpu_count()} cores, '
              f'load average before: {os.getloadavg()[0]:.1f}')
        print(f'{"workers":>7}  {"sandbox":>7}  {"seconds":>7}  {"s per submission":>16}  {"submissions per minute":>22}')
        runs = {}
        for jobs, boxed in ((1, True), (1, False), (2, True)):
            flags = [] if boxed else ['--no-sandbox']
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                runs[jobs, boxed] = grade.main([str(top / 'class'), '--out', str(top / f'out{jobs}{boxed}'),
                                                '--jobs', str(jobs)] + flags)
            r = runs[jobs, boxed]
            print(f'{jobs:>7}  {"yes" if boxed else "no":>7}  {r["seconds"]:>7.1f}  {r["seconds"] / r["students"]:>16.2f}  '
                  f'{60 * r["students"] / r["seconds"]:>22.1f}')
        print(f'the sandbox costs {runs[1, True]["seconds"] / runs[1, False]["seconds"]:.2f}x the time without it; '
              f'2 workers grade {runs[1, True]["seconds"] / runs[2, True]["seconds"]:.2f}x as fast as 1 '
              f'(load average after: {os.getloadavg()[0]:.1f})')
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == '__main__':
    main()
