"""The names' dataset as the judge receives it (a frame for its stdin), built once per grading
run: the grader's forkserver imports this module before it forks a worker per student."""
import checks.training
from grading.judge import encode

FRAME = encode(checks.training.splits(3))
