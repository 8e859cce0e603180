"""The checks the notebooks' hidden tests call: each runs a student's function on fresh
inputs, with autograd switched off, and compares it with PyTorch's gradients in float64."""
