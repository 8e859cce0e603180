"""How fast a class is graded into a PostgreSQL gradebook: one shard with JOBS=2 against
two shards with JOBS=1 each at the same time, on the same class, side by side.

    python tools/bench_course.py [--students 60] [--notebooks 01_atomic_backprop]   (make bench-course)

Runs as root (PostgreSQL runs as the postgres user, on a throwaway cluster). The class is
generated: the solution, the classic Bessel slip and a blank release, in turn. Each run is
timed from the start of `make grade` to the end of the last shard, set-up included, as an
instructor sees it; afterwards nbgrader export must list every student once with the
score their work deserves, or the tool stops.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from itertools import cycle
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.course import ENV, WORK, Postgres, course_folder, run, write_class  # noqa: E402


def shard(folder, out, db_url, jobs, notebooks):
    cmd = ['make', '-s', '-C', str(ROOT), 'grade', f'SUBMISSIONS={folder}', f'OUT={out}', f'JOBS={jobs}',
           f'NOTEBOOKS={notebooks}', f'GRADE_FLAGS=--db-url {db_url}']
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def timed(shards):
    started = time.monotonic()
    procs = [shard(*s) for s in shards]
    errors = [p.communicate()[1] for p in procs]
    for p, err in zip(procs, errors):
        if p.returncode:
            raise SystemExit(f'make grade failed:\n{err[-3000:]}')
    return time.monotonic() - started


def check(course, db_url, to, kinds):
    """nbgrader export: every student once, with the score their kind of work deserves."""
    run(ROOT / '.venv' / 'bin' / 'nbgrader', 'export', f'--db={db_url}', f'--to={to}', '--log-level=WARN', cwd=course)
    rows = list(csv.DictReader(to.open()))
    got = sorted((r['student_id'], float(r['score'])) for r in rows)
    want = sorted((s, float(WORK[k][1])) for s, k in kinds.items())
    if got != want:
        raise SystemExit(f'the gradebook does not hold the class as graded: {len(got)} rows for {len(want)} students')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--students', type=int, default=60)
    ap.add_argument('--notebooks', default='01_atomic_backprop')
    args = ap.parse_args()
    top = Path(tempfile.mkdtemp(prefix='bench-course-'))
    server = Postgres(tempfile.mkdtemp(prefix='bpn-pg-'))
    try:
        kinds = {f'{kind}_{i:02d}': kind for i, kind in zip(range(args.students), cycle(['right', 'slip', 'blank']))}
        names = sorted(kinds)
        halves = [{s: kinds[s] for s in names[0::2]}, {s: kinds[s] for s in names[1::2]}]
        whole = write_class(top / 'class', kinds)
        parts = [write_class(top / f'shard{i}', half) for i, half in enumerate(halves)]
        print(f'{args.students} submissions (right, slip, blank in turn), notebooks {args.notebooks}, '
              f'BPN_STEPS={ENV["BPN_STEPS"]}, {os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.1f}')
        print(f'{"run":<28}  {"seconds":>7}  {"students per minute":>19}')
        seconds = {}
        for label, plan in (('one shard, JOBS=2', [(whole, 2)]), ('two shards at once, JOBS=1', [(p, 1) for p in parts])):
            db_url = server.database()
            course = course_folder(top / f'course{len(seconds)}', db_url)
            seconds[label] = timed([(folder, top / f'out{len(seconds)}_{i}', db_url, jobs, args.notebooks)
                                    for i, (folder, jobs) in enumerate(plan)])
            check(course, db_url, top / f'export{len(seconds)}.csv', kinds)
            print(f'{label:<28}  {seconds[label]:>7.1f}  {60 * args.students / seconds[label]:>19.1f}')
        one, two = seconds.values()
        print(f'two shards take {two / one:.2f}x the time of one shard with 2 workers; nothing lost in either '
              f'(load average after: {os.getloadavg()[0]:.1f})')
    finally:
        server.stop()
        subprocess.run(['rm', '-rf', str(top)])


if __name__ == '__main__':
    main()
