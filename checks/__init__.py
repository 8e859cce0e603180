"""The graded checks, one spec per graded cell of the notebooks, by its nbgrader grade id.

    spec = checks.spec('test_stage1')
    spec.cases(seed)            # the grader: fresh float64 inputs, from that seed only
    spec.run(answer, inputs)    # the student's kernel: the answer on one input, as plain data
    spec.judge(inputs, outputs) # the grader: None when right, else one sentence saying why not
"""
import importlib

MODULES = ['checks.atomic', 'checks.cross_entropy', 'checks.batchnorm', 'checks.training']


def specs():
    """{grade id: spec} for every graded cell of the four notebooks."""
    out = {}
    for name in MODULES:
        for s in importlib.import_module(name).SPECS:
            assert s.gid not in out, f'grade id {s.gid} is checked twice'
            out[s.gid] = s
    return out


def spec(gid):
    """The spec of graded cell `gid`; KeyError for a grade id no check knows."""
    return specs()[gid]
