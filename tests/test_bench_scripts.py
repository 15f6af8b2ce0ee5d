"""Every benchmark script still imports: the names it takes from the project exist (a bench is
run by hand, rarely, so a renamed function would otherwise break it unnoticed)."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_a_bench_script_imports(path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # as when it runs: its folder comes first
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # module level only: main() runs under __name__ == "__main__"
    assert callable(getattr(module, "main", None)) or path.stem in {"stack", "http1", "labelstudio"}
