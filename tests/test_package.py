"""The top-level package: its spelled-out ``__all__`` and its lazy imports."""
import subprocess
import sys

import mango


def test_all_lists_exactly_the_lazy_names():
    assert mango.__all__ == sorted([*mango._WHERE, *mango._MODULES])
    assert dir(mango) == mango.__all__
    for name in mango.__all__:
        assert getattr(mango, name) is not None


def test_import_loads_nothing_heavy():
    code = "import sys, mango; print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
