"""scripts/test_robust.py (make test-robust): another draw on this machine, in its own cache."""

import importlib.util
import os

import pytest
import torch

from prm_core.results_table import ROOT


@pytest.fixture(scope="module")
def robust():
    spec = importlib.util.spec_from_file_location("test_robust", ROOT / "scripts" / "test_robust.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_draw_uses_other_kernels_than_this_machine(robust):
    native = robust.native_capability()
    if "ATEN_CPU_CAPABILITY" not in os.environ:
        assert native == torch.backends.cpu.get_cpu_capability()
    below = robust.BELOW.get(native.upper(), "default")
    assert below != native.lower() or native.upper() == "DEFAULT"


def test_the_ordinary_cache_is_refused_as_the_second_one(robust, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRM_COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(robust, "native_capability", lambda: "AVX2")
    with pytest.raises(SystemExit) as info:
        robust.main(["--cache", str(tmp_path)])
    assert info.value.code == 2 and "the ordinary cache" in capsys.readouterr().err


def test_a_failing_step_names_the_draw_and_returns_its_code(robust, tmp_path, monkeypatch, capsys):
    calls = []

    class Done:
        def __init__(self, code):
            self.returncode = code

    def fake_run(command, cwd, env):
        calls.append((command, env["ATEN_CPU_CAPABILITY"], env["PRM_COURSE_CACHE"]))
        return Done(3 if "pytest" in command else 0)

    monkeypatch.delenv("PRM_COURSE_CACHE", raising=False)
    monkeypatch.setattr(robust, "native_capability", lambda: "AVX512")
    monkeypatch.setattr(robust.subprocess, "run", fake_run)
    assert robust.main(["--cache", str(tmp_path / "robust"), "--kinds", "standard"]) == 3
    assert [c[1] for c in calls] == ["avx2", "avx2"] and all(c[2] == str(tmp_path / "robust") for c in calls)
    assert "--kinds" in calls[0][0] and "holds for one draw only" in capsys.readouterr().err
