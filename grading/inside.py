"""What runs inside one student's sandbox: nbgrader autograde of their notebooks, in the
scratch course folder BOX (the only place it can write).

    python -m grading.inside BOX      (grading/worker.py starts it, in bubblewrap)

BOX/box.json says who and the limits. Each hidden test hands the student's answers on the
grader's inputs to BOX/handin/outputs (checks.handin); nbgrader's own scores here count
for nothing: the grader judges those outputs outside, after this process and everything
it started have ended.
"""
import json
import os
import sys
import warnings
from pathlib import Path


def nbgrader_config(box, job):
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern,
                                        LimitOutput, SaveAutoGrades)
    from grading.course import kit_config
    from grading.execute import RobustExecute
    cfg = kit_config(box)
    cfg.Autograde.autograde_preprocessors = [RobustExecute, IgnorePattern, ClearMetadataPreprocessor,
                                             LimitOutput, SaveAutoGrades, AssignLatePenalties,
                                             CheckCellMetadata]
    cfg.Execute.timeout = job['timeout']
    cfg.RobustExecute.notebook_timeout = job['notebook_timeout']
    cfg.Execute.extra_arguments = ["--IPKernelApp.exec_lines=__import__('grading.kernel_start')"]
    return cfg


def main(box):
    box = Path(box)
    job = json.loads((box / 'box.json').read_text())
    for key in ('HOME', 'IPYTHONDIR', 'JUPYTER_RUNTIME_DIR', 'MPLCONFIGDIR', 'XDG_CACHE_HOME'):
        if key in os.environ:
            os.makedirs(os.environ[key], exist_ok=True)
    warnings.filterwarnings('ignore')
    from nbgrader.apps import NbGraderAPI
    api = NbGraderAPI(config=nbgrader_config(box, job))
    result = api.autograde(job['assignment'], job['student'], force=True, create=True)
    print((result.get('log') or '') + (result.get('error') or ''))
    if not result['success']:
        lines = [ln for ln in (result.get('error') or result.get('log') or '').splitlines() if ln.strip()]
        print(f'nbgrader could not autograde: {lines[-1] if lines else "no log"}')
        sys.exit(3)


if __name__ == '__main__':
    main(sys.argv[1])
