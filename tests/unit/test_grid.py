"""The shared few-step grid, in plain Python (no ComfyUI)."""

import subprocess
import sys

import pytest

from quickstep.samplers import grid


@pytest.mark.parametrize("steps,expected", [(1, [999]), (2, [999, 499]), (3, [999, 666, 332]),
                                            (4, [999, 749, 499, 249])])
def test_trailing_discrete_timesteps_are_diffusers_trailing(steps, expected):
    # diffusers: np.round(np.arange(1000, 0, -1000 / steps)).astype(int) - 1
    assert grid.discrete_timesteps(steps) == expected


def test_fractions_are_the_ladd_student_grid():
    assert grid.fractions(4) == [1.0, 0.75, 0.5, 0.25]
    assert grid.fractions(2, 0.5) == [0.5, 0.25]


def test_denoise_scales_the_grid_down():
    assert grid.discrete_timesteps(1, 0.5) == [499]
    assert all(0 < f <= 0.3 for f in grid.fractions(3, 0.3))


def test_add_demo_spacing_is_core_sdturbo_spacing():
    assert grid.discrete_timesteps(4, spacing=grid.ADD_DEMO) == [999, 899, 799, 699]
    assert grid.discrete_timesteps(2, 0.5, spacing=grid.ADD_DEMO) == [499, 399]
    with pytest.raises(ValueError, match="at most 2 steps"):
        grid.fractions(3, 0.25, grid.ADD_DEMO)


@pytest.mark.parametrize("steps", [0, 9, -1, 2.5])
def test_steps_out_of_range(steps):
    with pytest.raises(ValueError, match="steps must be an integer from 1 to 8"):
        grid.fractions(steps)


@pytest.mark.parametrize("denoise", [0.0, -0.1, 1.01])
def test_denoise_out_of_range(denoise):
    with pytest.raises(ValueError, match=r"denoise must be in \(0, 1\]"):
        grid.fractions(2, denoise)


def test_unknown_spacing():
    with pytest.raises(ValueError, match="grid must be one of"):
        grid.fractions(2, 1.0, "leading")


def test_parse_custom():
    assert grid.parse_custom("999, 749,499 249") == [999, 749, 499, 249]
    for text, message in [("1, 2", "strictly decreasing"), ("5, 5", "strictly decreasing"), ("", "empty"),
                          ("a, b", "must be numbers"), (", ".join(str(999 - i) for i in range(9)), "at most 8")]:
        with pytest.raises(ValueError, match=message):
            grid.parse_custom(text)


def test_importing_the_pack_loads_no_comfyui_and_no_heavy_library():
    code = ("import sys, harness; harness.register_pack(); import quickstep, quickstep.samplers.grid; "
            "heavy = [m for m in ('torch', 'comfy', 'comfy_api', 'transformers', 'kornia') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd="tests", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
