"""A demo class made on the fly from the kit's notebooks, so that `make grade` with no
submissions shows the whole pipeline: one student per folder, as the instructor would
lay out a real class."""
import copy
import re
import shutil
import sys
from pathlib import Path

import nbformat

from grading.course import grade_id

STEPS = 2000  # BPN_STEPS for the demo class, unless set already

# typical slips in notebook 1: (student, cell, text in the solution, what they wrote instead)
MISTAKES = [
    ('cy_bessel', 'stage3', 'torch.ones_like(bndiff) / (n - 1) * dbnvar', 'torch.ones_like(bndiff) / n * dbnvar'),
    ('di_fanout', 'stage1', '    dcounts += dcounts_sum\n', ''),
    ('ed_batch32', 'stage1', 'n = logprobs.shape[0]', 'n = 32'),
]


def strip_markers(source):
    """A solution cell as a student who got it right would hand it in."""
    return re.sub(r'^\s*### (BEGIN|END) SOLUTION\s*\n', '', source, flags=re.M)


def solved(nb):
    """The release of course.Notebook `nb` with every answer cell filled in from the solution."""
    out = copy.deepcopy(nb.release)
    answers = {grade_id(c): strip_markers(c.source) for c in nb.source.cells if grade_id(c) in nb.solutions}
    for cell in out.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return out


def build(folder, assignment):
    """Write the demo class into `folder` and return it."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    students = {'ada_solution': {}, 'ben_blank': {}, 'fay_renamed': {}}
    for name, nb in assignment.notebooks.items():
        students['ada_solution'][f'{name}.ipynb'] = solved(nb)
        students['ben_blank'][f'{name}.ipynb'] = copy.deepcopy(nb.release)
        students['fay_renamed'][f'{name}-Copy1.ipynb'] = solved(nb)
    first = next(iter(assignment.notebooks.values()))
    for student, gid, right, wrong in MISTAKES:
        nb = solved(first)
        cells = [c for c in nb.cells if grade_id(c) == gid]
        if not cells or right not in cells[0].source:
            print(f'demo: no {student} ({gid} of {first.name} has changed)', file=sys.stderr)
            continue
        cells[0].source = cells[0].source.replace(right, wrong)
        students[student] = {f'{first.name}.ipynb': nb}
        for name, other in assignment.notebooks.items():
            if other is not first:
                students[student][f'{name}.ipynb'] = solved(other)
    for student, files in students.items():
        (folder / student).mkdir(parents=True)
        for filename, nb in files.items():
            nbformat.write(nb, folder / student / filename)
    return folder
