"""Make `import torch_oracle` (tests/) and `import flake8_gpumem` (repo root) work
however pytest is invoked."""
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for _path in (_TESTS, _TESTS.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
