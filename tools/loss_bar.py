"""Measure the loss bar of notebook 4 (MEASURED in checks/training.py).

    python tools/loss_bar.py [--seeds 5] [--steps 500,1000,...]

For every step count, trains the network exactly as the solution notebook does (its own
train_step, init and minibatches from one generator seeded SEED + k, lr 0.1 then 0.01 from
half-way) once per seed, measures train and val loss the way the grader does, and prints
the worst of the seeds as lines for MEASURED. The full table takes about 10 minutes.
"""
import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import notebook_step  # noqa: E402
from checks.training import MEASURED, split_losses  # noqa: E402
from helpers import SEED, init_params, read_words, split_dataset, vocabulary  # noqa: E402


def train(train_step, Xtr, Ytr, steps, seed):
    g = torch.Generator().manual_seed(seed)
    parameters = init_params(27, 10, 200, 3, g=g)
    with torch.no_grad():
        for i in range(steps):
            ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
            train_step(parameters, Xtr[ix], Ytr[ix], 0.1 if i < steps // 2 else 0.01)
    return parameters


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--seeds', type=int, default=5)
    ap.add_argument('--steps', default=','.join(str(s) for s in MEASURED))
    args = ap.parse_args()
    torch.set_num_threads(1)
    words = read_words()
    stoi, _ = vocabulary(words)
    (Xtr, Ytr), _, _ = split_dataset(words, stoi)
    train_step = notebook_step()
    for steps in (int(s) for s in args.steps.split(',')):
        runs = [split_losses(train(train_step, Xtr, Ytr, steps, SEED + k)) for k in range(args.seeds)]
        tr, va = [r[0] for r in runs], [r[1] for r in runs]
        print(f'    {steps:_}: ({max(tr):.4f}, {max(va):.4f}),  # train {min(tr):.4f}..{max(tr):.4f}, '
              f'val {min(va):.4f}..{max(va):.4f}', flush=True)


if __name__ == '__main__':
    main()
