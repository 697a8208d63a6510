"""The study summary's baseline lines (study.baselines.margin_lines): the strongest baseline is chosen
on validation without side information, every Pareto trial gets its margin, and a study none of whose
trials beats it says so with the gap."""
from study.baselines import margin_lines, strongest_row, suite_rows, trial_seeds
from trainables.baseline_suite import SuiteResult
from trainables.replicas import replica_seed

ROWS = [
    {"name": "kmeans", "label": "K-means", "preset": "compact", "side_information": False,
     "val/acc": 0.42, "test/acc": 0.40},
    {"name": "awe_gmm", "label": "AWE GMM", "preset": "awe", "side_information": False,
     "val/acc": 0.57, "test/acc": 0.61},
    {"name": "awe_speaker_kmeans", "label": "AWE K-means, CMVN", "preset": "awe_speaker",
     "side_information": True, "val/acc": 0.75, "test/acc": 0.74},
]


def _trial(number, val, test):
    return {"number": number, "values": {"val/acc": val}, "test": {"test/acc": test}}


def test_strongest_ignores_side_information_unless_asked():
    assert strongest_row(ROWS)["name"] == "awe_gmm"
    assert strongest_row(ROWS, side_information=True)["name"] == "awe_speaker_kmeans"
    # with speaker ids: the strongest of the baselines that use them, even below one that does not
    rows = [{**r, "val/acc": 0.5} if r["side_information"] else r for r in ROWS]
    assert strongest_row(rows, side_information=True)["name"] == "awe_speaker_kmeans"
    assert "<- strongest with speaker ids" in "\n".join(margin_lines(rows, []))


def test_margins_name_the_strongest_and_the_trials_above_it():
    lines = margin_lines(ROWS, [_trial(3, 0.60, 0.58), _trial(7, 0.50, 0.52)])
    text = "\n".join(lines)
    assert "awe_gmm" in text and "<- strongest" in text
    assert "trial   3 vs awe_gmm: val/acc +3.0 points, test/acc -3.0 points" in text
    assert "trial   7 vs awe_gmm: val/acc -7.0 points, test/acc -9.0 points" in text
    assert lines[-1].strip() == "Pareto trials above the strongest baseline on val/acc: 3"


def test_a_study_below_the_baseline_says_so_with_the_gap():
    lines = margin_lines(ROWS, [_trial(1, 0.36, 0.30), _trial(2, 0.20, 0.21)])
    assert "no Pareto trial beats the strongest baseline (awe_gmm)" in lines[-1]
    assert "by 21.0 points" in lines[-1]


def test_a_trial_on_a_speaker_normalised_front_end_is_measured_against_the_baselines_with_speaker_ids():
    rows = [{"name": "kmeans", "label": "K-means", "preset": "awe_speaker", "side_information": True,
             "val/acc": 0.61, "test/acc": 0.64}] + ROWS[1:]
    lines = margin_lines(rows, [{**_trial(4, 0.70, 0.72), "params": {}}])
    assert "trial   4 vs awe_speaker_kmeans: val/acc -5.0 points, test/acc -2.0 points" in "\n".join(lines)
    assert "no Pareto trial beats the strongest baseline (awe_speaker_kmeans)" in lines[-1]
    assert "by 5.0 points" in lines[-1]
    # several front ends searched: each trial by its own
    lines = margin_lines(ROWS, [{**_trial(5, 0.70, 0.72), "params": {"frontend": "awe_speaker"}},
                                {**_trial(6, 0.70, 0.72), "params": {"frontend": "awe"}}])
    text = "\n".join(lines)
    assert "trial   5 vs awe_speaker_kmeans: val/acc -5.0 points, test/acc -2.0 points" in text
    assert "trial   6 vs awe_gmm: val/acc +13.0 points, test/acc +11.0 points" in text
    assert lines[-1].strip() == "Pareto trials above the strongest baseline on val/acc: 6"


def test_baselines_are_fitted_with_the_seeds_the_trials_train_from():
    """A study with replicas judges each trial by the mean of its replicas' seeds; its baselines are
    fitted with the same seeds, and the summary says which (a 3-seed trial mean against a seed-0
    baseline mixed two kinds of figure)."""
    assert trial_seeds({}) == [0]
    assert trial_seeds({"seed": 4}) == [4]
    assert trial_seeds({"seed": "2", "replicas": "3"}) == [replica_seed(2, r) for r in range(3)]
    results = [SuiteResult("awe_gmm", "AWE GMM", "awe", False, {"val/acc": 0.57, "test/acc": 0.61})]
    one, three = suite_rows(results), suite_rows(results, trial_seeds({"replicas": 3}))
    assert one[0]["seeds"] == "0" and one[0]["val/acc"] == 0.57
    assert three[0]["seeds"] == ",".join(str(replica_seed(0, r)) for r in range(3))
    assert "(seed 0;" in margin_lines(one, [])[0]
    assert f"(mean of seeds 0, {replica_seed(0, 1)}, {replica_seed(0, 2)}, the trials' replicas;" in \
        margin_lines(three, [])[0]
    assert "(seed 0;" in margin_lines(ROWS, [])[0]  # rows written before the seeds were recorded
