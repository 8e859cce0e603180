"""What every notebook shares: the names data (data.py), the network's parameters and its
forward pass cut into atoms (network.py), `cmp` and a finite-difference gradient check
(compare.py), and the picture `cmp` shows under a wrong gradient (picture.py, made only in a
Jupyter kernel). The graders' checks live in `checks/`."""
from helpers.data import NAMES_TXT, build_dataset, read_words, split_dataset, vocabulary
from helpers.network import BN_EPS, SEED, forward_atoms, init_params, notebook1_batch
from helpers.compare import ATOL32, ATOL64, RTOL32, RTOL64, cmp, diagnose, mistake, numerical_grad

__all__ = ['NAMES_TXT', 'build_dataset', 'read_words', 'split_dataset', 'vocabulary',
           'BN_EPS', 'SEED', 'forward_atoms', 'init_params', 'notebook1_batch',
           'ATOL32', 'ATOL64', 'RTOL32', 'RTOL64', 'cmp', 'diagnose', 'mistake', 'numerical_grad']
