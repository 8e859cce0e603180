"""What the grader's forkserver makes once per grading run, before it forks a worker per
student: the names' dataset as the judge receives it (a frame for its stdin), and the
feedback page's templates, compiled by rendering a page no one reads."""
import nbformat

import checks.training
from grading import feedback
from grading.judge import encode

FRAME = encode(checks.training.splits(3))

cells = [nbformat.v4.new_markdown_cell('#'), nbformat.v4.new_code_cell('', outputs=[nbformat.v4.new_output('stream')])]
feedback.exporter().from_notebook_node(nbformat.v4.new_notebook(cells=cells), resources=dict(
    nbgrader=dict(notebook='', score=0, max_score=0, late_penalty=0)))
