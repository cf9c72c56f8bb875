"""charmlp-bench: the FMA peak it measures, and its report (tables and --json) on a tiny run."""
import json
import random

import pytest

from conftest import native_available

from charmlp import bench
from charmlp.engines import native, peak


@pytest.fixture
def names_file(tmp_path):
    rng = random.Random(0)
    names = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
             for _ in range(400)]
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def test_peak_kernel_measures_a_plausible_fma_rate():
    if not native_available():
        pytest.skip("no C compiler here")
    rate = peak.gflops(seconds=0.01)
    # one core: above a scalar FPU's few GFLOP/s, below any CPU core's 16-lane x 2-unit peak
    assert 4 < rate < 400


def tiny(names_file, *extra):
    return ["--data", str(names_file), "--rounds", "1", "--steps", "200", "--final-steps", "200",
            "--configs", "emb10/hid200,ctx6/emb40/hid569", "--engines", "native,reference", *extra]


def test_json_report_has_gflops_percent_of_peak_and_targets(names_file, capsys):
    if not native_available():
        pytest.skip("no C compiler here")
    bench.main(tiny(names_file, "--json", "--profile"))
    report = json.loads(capsys.readouterr().out)
    assert report["peak_gflops"] > 0
    rows = {(r["engine"], r["config"]): r for r in report["speed"]}
    assert set(rows) == {(e, c) for e in ("native", "reference") for c in ("emb10/hid200", "ctx6/emb40/hid569")}
    wide = rows[("native", "ctx6/emb40/hid569")]
    assert (wide["context"], wide["emb"], wide["hidden"], wide["batch"]) == (6, 40, 569, 32)
    flops = 6 * 32 * (6 * 40 * 569 + 569 * 27)  # 26 letters and '.'
    assert wide["gflops"] == pytest.approx(wide["steps_per_sec"] * flops / 1e9)
    assert wide["pct_peak"] == pytest.approx(100 * wide["gflops"] / report["peak_gflops"])
    assert rows[("reference", "emb10/hid200")]["x_ref"] == pytest.approx(1.0)
    gaps = [r["max_gap"] for r in report["agreement"] if r["engine"] == "native"]
    assert gaps and gaps[0] < 1e-4
    assert report["targets"]["batch losses equal the reference's within 1e-4"] is True
    assert any("25x the reference at emb10/hid200" in k for k in report["targets"])
    for row in report["evaluation"]:
        assert 0 < row["native_share"] < 1 and row["native_dev_s"] > 0
    phases = report["profile"][0]["us_per_step"]
    assert set(phases) == set(native.PHASES) and phases["first layer"] > 0


def test_table_report_prints_peak_and_percent_columns(names_file, capsys):
    if not native_available():
        pytest.skip("no C compiler here")
    bench.main(tiny(names_file))
    out = capsys.readouterr().out
    assert "measured FMA peak:" in out and "% peak" in out and "GFLOP/s" in out
    assert "ctx6/emb40/hid569" in out and "target: native >= 25x the reference" in out


def test_unknown_config_is_one_clear_line(names_file):
    with pytest.raises(SystemExit, match="unknown config nope.*fix: --configs from"):
        bench.main(["--data", str(names_file), "--configs", "nope"])


def test_round_steps_are_whole_and_shrink_with_size():
    small = bench.round_steps(bench.CONFIGS["emb10/hid200"], 500)
    wide = bench.round_steps(bench.CONFIGS["ctx8/emb40/hid800/b128"], 500)
    assert (small, wide) == (500, 200) and all(isinstance(n, int) for n in (small, wide))
