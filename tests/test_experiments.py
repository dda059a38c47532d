"""The experiments of experiments/ at small size: each reproduces with its one command
and shows its effect in the expected direction (and of a meaningful size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess
ROOT = Path(__file__).resolve().parents[1]


def experiment(name: str, tmp_path: Path, *args: str) -> dict:
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / name / "run.py"), "--size",
                        "small", "-o", str(tmp_path), *args], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "figure.png").stat().st_size > 10_000
    return json.loads((tmp_path / "results.json").read_text())["summary"]


def test_stroma_dependence(tmp_path):
    s = experiment("stroma-dependence", tmp_path)
    # poorly vascularised stroma: without angiogenesis the burden stalls (late relative
    # growth rate ~ 0/day) and the cells stay hypoxic; with it, vessels come and it grows
    assert abs(s["late_growth_rate_no_angiogenesis"]) < 0.005
    assert s["late_growth_rate_angiogenesis"] > 0.015
    assert s["burden_ratio_angiogenesis_over_none"] > 3.0
    assert s["hypoxic_cell_fraction_no_angiogenesis"] > 0.9
    assert s["hypoxic_cell_fraction_angiogenesis"] < s["hypoxic_cell_fraction_no_angiogenesis"] - 0.2
    assert s["vessel_density_cells_angiogenesis"] > 5 * s["vessel_density_cells_no_angiogenesis"]
    # well-vascularised tme-2d: the tumour grows along the capillary bed either way
    assert s["vascularised_late_growth_rate_no_angiogenesis"] > 0.02
    assert (s["vascularised_burden_ratio_angiogenesis_over_none"]
            < 0.5 * s["burden_ratio_angiogenesis_over_none"])
    # beds of physiological pO2: a denser bed holds more oxygen and needs angiogenesis less
    p = [s[f"stroma_{k}mmHg_final_pO2"] for k in (26, 30, 34)]
    r = [s[f"stroma_{k}mmHg_burden_ratio_angiogenesis_over_none"] for k in (26, 30, 34)]
    assert 15 < p[0] < p[1] < p[2] < 38 and r[0] > r[1] > r[2] > 1.0
    assert s["prediction_physiological_stroma"].endswith(("holds", "fails"))


def test_cafs_accelerate_growth_and_invasion(tmp_path):
    s = experiment("cafs", tmp_path)
    assert s["burden_ratio_full_over_no_caf"] > 1.3
    assert s["invasion_distance_full"] > s["invasion_distance_no_caf"]


def test_immune_polarisation(tmp_path):
    s = experiment("immune-polarisation", tmp_path)
    assert s["macrophage_effect_m1_polarised"] < 0.9  # suppressive infiltrate
    assert s["macrophage_effect_m2_polarised"] > 1.1  # promoting infiltrate
    assert s["burden_ratio_no_tcell_over_baseline"] > 1.1
    assert s["m1_m2_ratio_m1_polarised"] > 1 > s["m1_m2_ratio_m2_polarised"]


def test_stem_cell_niche(tmp_path):
    s = experiment("stem-cell-niche", tmp_path)
    full = s["csc_fraction_full_niche"]
    assert s["csc_fraction_no_caf_niche"] < 0.9 * full
    assert s["csc_fraction_no_perivascular_niche"] < 0.9 * full
    assert s["csc_fraction_no_niche"] < min(s["csc_fraction_no_caf_niche"],
                                             s["csc_fraction_no_perivascular_niche"])


def test_metastatic_potential(tmp_path):
    s = experiment("metastatic-potential", tmp_path)
    assert s["blood_ratio_more_blood_vessels"] > 1.1
    assert s["lymph_ratio_more_lymphatics"] > 1.2
    for arm in ("more_blood_vessels", "more_m2", "more_caf"):
        assert s[f"ctc_ratio_{arm}"] > 1.05, arm


def test_cohort_correlations(tmp_path):
    s = experiment("cohort", tmp_path, "--samples", "8")
    pairs = {k: v for k, v in s.items() if isinstance(v, dict)}
    assert len(pairs) == 5 * 2 + 2  # five predictors, two outcomes, and proliferation
    for k, v in pairs.items():
        assert -1.0 <= v["spearman_rho"] <= 1.0, k
        if not k.startswith("proliferation"):
            assert -1.0 <= v["partial_rho"] <= 1.0 and 0.0 <= v["partial_p_value"] <= 1.0, k
    for k in (1, 2, 3, 4):
        assert s[f"prediction_{k}"].endswith(("holds", "fails"))
    # angiogenesis early on goes with a larger tumour later (robust even with 8 tumours)
    assert s["early angiogenesis vs final burden"]["spearman_rho"] > 0.3


def test_scratch_assay_calibrates_both_models_on_the_real_data(tmp_path):
    s = experiment("scratch-assay", tmp_path)
    for variant in ("from-0h", "from-12h"):
        for model in ("fisher-kpp", "porous-fisher"):
            for n in (10, 16):
                D, r = s[f"{variant}_{model}_D_{n}k"], s[f"{variant}_{model}_r_{n}k"]
                assert 50 < D < 5000 and 0.001 < r < 0.2  # inside the bounds, not on them
            assert 0 < s[f"{variant}_{model}_mean_forecast_rel_rmse_48h"] < 1
        assert s[f"{variant}_prediction_D_drifts_less_with_porous_fisher"].split()[0] in (
            "holds", "is")
    rec = json.loads((tmp_path / "runs" / "from-0h" / "fisher-kpp-16" / "calibration.json")
                     .read_text())
    assert rec["data"] == [str(tmp_path / "data" / "jin2016-16.csv")]  # this density's only
    assert rec["n_data"] == 2 * 38 * 3  # 12 and 24 h, 38 bins, 3 replicates


def test_image_twin_meshes_calibrates_and_forecasts_a_synthetic_patient(tmp_path):
    s = experiment("image-twin", tmp_path)
    # the mesh of the organ mask (2.4 x 2.4 x 4.8 mm voxels) has the mask's volume
    assert abs(s["mesh_volume_error_vs_mask"]) < 1e-2
    # at the small size the truth's Gaussian seed (4 mm) is barely resolved by the voxels
    # and the mesh, so the estimates are biased (measured -7 % and +21 %) beyond their
    # intervals; the test asks for the right order and a usable forecast
    assert 0.6 < s["D_estimate"] / s["D_true"] < 1.5
    assert 0.6 < s["r_estimate"] / s["r_true"] < 1.5
    assert s["dice_day120"] > 0.8 and abs(s["cell_count_error_day120"]) < 0.3
    assert s["dice_truth_vs_observed_day120"] > s["dice_day120"] - 0.1
    # the cause of the bias in rho: the start lacks the cells below the detection limit
    # (measured 15 %); the control, started from the noise-free map, is closer (-3 %)
    assert 0.05 < s["start_mass_below_detection"] < 0.3
    assert abs(s["control_r_relative_error"]) < abs(s["r_relative_error"])
    assert abs(s["control_cell_count_error_day120"]) < abs(s["cell_count_error_day120"])
    # the inferred start (a seed fitted to visit 0 with D and rho): the truth inside the
    # intervals (measured +2 % and +4 %, intervals +-6 %) and the prediction holds
    assert s["seeded_D_within_ci95"] and s["seeded_r_within_ci95"]
    assert abs(s["seeded_D_relative_error"]) < 0.1 and abs(s["seeded_r_relative_error"]) < 0.1
    assert s["seeded_prediction"] == "holds"
    assert abs(s["seeded_cell_count_error_day120"]) < abs(s["cell_count_error_day120"])
    for name in ("organ.nii.gz", "organ.msh", "visits.csv", "twin-measured.toml",
                 "calibration-measured/calibration.json", "forecast-measured/metrics.csv",
                 "forecast-measured/cells_t120.nii.gz", "calibration-control/calibration.json",
                 "visits-0-60.csv", "calibration-seeded/calibration.json"):
        assert (tmp_path / "runs" / name).is_file(), name


def test_spheroid_calibrates_to_the_wm983b_radii_and_compares_with_greenspan(tmp_path):
    s = experiment("spheroid", tmp_path)
    for ob in ("outer_radius", "inhibited_radius", "necrotic_radius"):
        # fits of days 4-10 of the 5,000-cell spheroids (radii 180-300 um): errors of the
        # order of the spread between spheroids, not of the radii themselves
        assert 0 < s[f"rmse_{ob}_5000"] < 80, ob
        assert 0 < s[f"greenspan_rmse_{ob}_5000"] < 80, ob
        assert s[f"finer_mesh_change_{ob}_5000"] < 0.1, ob
    assert 0.05 < s["lam_5000"] < 5.0 and 6.0 < s["c_i_5000"] < 155.0
    assert 0 < s["Q_5000"] < 1 and 10 < s["R_d_5000"] < 1000
    for k in (1, 2, 3, 4):
        assert s[f"prediction_{k}"].endswith(("holds", "fails"))
    rec = json.loads((tmp_path / "runs" / "wm983b-5000" / "calibration.json").read_text())
    assert rec["data"] == [str(tmp_path / "data" / "wm983b-5000.csv")]
    # the radii move from one mesh interval to the next: on this coarse mesh the objective's
    # kinks may stop the optimiser at its evaluation limit instead of its tolerances
    assert rec["status"] in ("converged", "stopped"), rec["status"]


def test_oxygenation_reports_the_tumour_po2_against_the_measured_range(tmp_path):
    s = experiment("oxygenation", tmp_path)
    # small size: 24 days; pO2 between anoxia and the 38 mmHg of oxygen = 1
    for key in ("median_tumour_pO2_day24", "median_host_pO2_day24", "min_tumour_pO2_day24"):
        assert 0 <= s[key] <= 40, key
    assert s["min_tumour_pO2_day24"] <= s["median_tumour_pO2_day24"]
    assert 0 <= s["HP2.5_day24"] <= s["HP5_day24"] <= s["HP10_day24"] <= 1
    assert s["fold_decrease_day24"] == pytest.approx(
        s["median_host_pO2_day24"] / s["median_tumour_pO2_day24"])
    for k in (1, 2, 3):
        assert s[f"prediction_{k}"].endswith(("holds", "fails"))
