"""The checks the notebooks' hidden tests call: each runs a student's function on fresh
inputs, with autograd switched off, and compares it with PyTorch's gradients in float64."""

# Every hidden check that passes prints this, then what it checked; the grader (grading/)
# zeroes a graded cell whose hidden check should have printed it and did not.
RECEIPT = 'hidden check passed: '
