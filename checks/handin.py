"""The one statement of a hidden test: hand_in(grade id, answer).

When the grader sets BPN_HANDIN to a folder, the answer runs on the grader's inputs
($BPN_HANDIN/inputs/<gid>.pt) and what it gives goes to $BPN_HANDIN/outputs/<gid>.pt; the
verdict is reached outside this kernel. Without BPN_HANDIN (building solutions/, the tests, a
reader running a notebook) the same cases, drawn from the public seed, are judged right here.
"""
import os
from pathlib import Path

import torch

import checks
from checks.core import PUBLIC_SEED, GradingError, judged


def hand_in(gid, answer):
    spec = checks.spec(gid)
    folder = os.environ.get('BPN_HANDIN')
    if folder:
        cases = torch.load(Path(folder) / 'inputs' / f'{gid}.pt', weights_only=True)['cases']
        outputs = [spec.run(answer, case) for case in cases]
        (Path(folder) / 'outputs').mkdir(parents=True, exist_ok=True)
        torch.save({'cases': outputs}, Path(folder) / 'outputs' / f'{gid}.pt')
        return
    cases = spec.cases(PUBLIC_SEED)
    for case in cases:
        verdict = judged(spec, answer, case)
        if verdict:
            raise GradingError(f'{spec.title}: {verdict}')
    drawn = f' on {len(cases)} fresh batches' if any(case.get('sizes') for case in cases) else ''
    print(f'{spec.title}: right{drawn} (when graded, the grader judges it outside this kernel)')
