"""Grading a whole class with nbgrader in one command: `make grade` (python -m grading).
See the Instructors section of the README."""
