"""The one statement of a hidden test: hand_in(grade id, answer).

In a kernel (building solutions/, the tests, a reader running a notebook, or nbgrader's own
`autograde` run by hand) it judges the answer right there, on the cases of the public seed,
and raises on a wrong one. `make grade` never runs it: its judge (grading/judge.py) leaves
the graded test cells out and calls the answer itself, on inputs drawn for that run.
"""
import checks
from checks.core import PUBLIC_SEED, GradingError, judged


def hand_in(gid, answer):
    spec = checks.spec(gid)
    cases = spec.cases(PUBLIC_SEED)
    for case in cases:
        verdict = judged(spec, answer, case)
        if verdict:
            raise GradingError(f'{spec.title}: {verdict}')
    drawn = f' on {len(cases)} fresh batches' if any(case.get('sizes') for case in cases) else ''
    print(f'{spec.title}: right{drawn}')
