"""Make `import torch_oracle` (tests/) and `import flake8_gpumem` (repo root) work
however pytest is invoked; a case PyTorch cannot run on this CPU is a skip with its reason."""
import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
for _path in (_TESTS, _TESTS.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """The oracle's own refusal (torch_oracle.OracleRefused) skips the test, reason shown."""
    try:
        return (yield)
    except Exception as exc:
        oracle = sys.modules.get("torch_oracle")
        if oracle is not None and isinstance(exc, oracle.OracleRefused):
            pytest.skip(str(exc))
        raise


def pytest_terminal_summary(terminalreporter):
    """Say which CPU the oracle ran on, so a log tells which cases could run."""
    oracle = sys.modules.get("torch_oracle")
    if oracle is not None:
        refused = sum(1 for r in terminalreporter.stats.get("skipped", []) if oracle.REFUSED in str(r.longrepr))
        terminalreporter.write_line(f"oracle: PyTorch {oracle.torch.__version__}, CPU capability "
                                    f"{oracle.cpu_capability()}; {refused} case(s) it cannot run on this CPU skipped")
