"""The CinC 2021 challenge score and the scored-class table of anyecg_hf.data.cinc."""

from pathlib import Path

import numpy as np
import pytest

from anyecg_hf.data.cinc import CINC2021_EQUIVALENT_CODES, CINC2021_SCORED, SNOMED_NAMES, cinc_label_table
from anyecg_hf.evaluation.challenge import cinc2021_challenge_score, cinc2021_class_matrix, cinc2021_weights

CINC = Path(__file__).parent / "assets" / "data" / "cinc2021"


def test_scored_classes_follow_the_weights_file():
    classes, weights = cinc2021_weights()
    assert len(CINC2021_SCORED) == len(classes) == 26 and weights.shape == (26, 26)
    for code, cls in zip(CINC2021_SCORED, classes):
        assert code in cls
    # every equivalent code belongs to the class of the code it is merged onto
    for alias, code in CINC2021_EQUIVALENT_CODES.items():
        assert {alias, code} <= set(classes[CINC2021_SCORED.index(code)])
    assert np.allclose(np.diag(weights), 1.0) and np.allclose(weights, weights.T)
    assert weights[0, 1] == 0.5  # AF predicted for AFL


def test_snomed_names_fixed():
    assert SNOMED_NAMES["251187003"][1] == "atrial escape beat"
    assert SNOMED_NAMES["54329005"][1] == "anterior myocardial infarction"
    assert SNOMED_NAMES["253352002"][1] == "left atrial abnormality"
    assert SNOMED_NAMES["67741000119109"][1] == "left atrial enlargement"


def test_challenge_score_matches_official_code():
    """Reference: physionetchallenges/evaluation-2021 evaluate_model.py (commit e2a75fc) run on the 50 test records'
    labels (written as `#Dx:` headers) and these binary outputs gave a Challenge metric of 0.5994459274752092."""
    table = cinc_label_table(CINC)
    y = cinc2021_class_matrix(table["codes"])
    i, j = np.arange(len(table))[:, None], np.arange(26)[None, :]
    pred = y ^ ((i * 7 + j * 3) % 11 == 0)
    assert cinc2021_challenge_score(y, pred) == pytest.approx(0.5994459274752092, abs=1e-12)
    assert cinc2021_challenge_score(y, y) == pytest.approx(1.0)
    normal_only = np.zeros_like(y)
    normal_only[:, CINC2021_SCORED.index("426783006")] = True
    assert cinc2021_challenge_score(y, normal_only) == pytest.approx(0.0)


def test_challenge_score_by_hand():
    # 3 classes, class 2 is "normal"; W rewards confusing 0 and 1 with 0.5
    w = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    y = np.array([[1, 0, 0], [0, 1, 1]], bool)
    p = np.array([[0, 1, 0], [0, 1, 0]], bool)
    # observed: rec0 union {0,1} -> A[0,1] += 1/2; rec1 union {1,2} -> A[1,1] += 1/2, A[2,1] += 1/2
    observed = 0.5 * 0.5 + 1.0 * 0.5 + 0.0
    correct = 1.0 + (1.0 + 1.0) / 2  # rec0: A[0,0]=1; rec1: A[1,1]=A[2,2]=1/2 (+ off-diagonals weighted 0)
    # inactive: rec0 {0,2} -> A[0,2] = 1/2 (w 0); rec1 {1,2} -> A[1,2] = A[2,2] = 1/2
    inactive = 0.5 * 1.0
    expected = (observed - inactive) / (correct - inactive)
    assert cinc2021_challenge_score(y, p, weights=w, normal_index=2) == pytest.approx(expected)


def test_class_matrix_merges_equivalent_codes():
    y = cinc2021_class_matrix(["733534002", "17338001,426783006", ""])
    assert y[0, CINC2021_SCORED.index("164909002")] and y[0].sum() == 1
    assert y[1, CINC2021_SCORED.index("427172004")] and y[1, CINC2021_SCORED.index("426783006")] and y[1].sum() == 2
    assert not y[2].any()


def test_challenge_score_rejects_probabilities():
    with pytest.raises(ValueError, match="threshold"):
        cinc2021_challenge_score(np.zeros((2, 26)), np.full((2, 26), 0.3))
    with pytest.raises(ValueError, match=r"\(n, 26\)"):
        cinc2021_challenge_score(np.zeros((2, 26)), np.zeros((2, 25)))


def test_challenge_score_of_dataset_columns():
    from anyecg_hf.evaluation.challenge import challenge_score_of_columns

    table = cinc_label_table(CINC)
    y = cinc2021_class_matrix(table["codes"])
    i, j = np.arange(len(table))[:, None], np.arange(26)[None, :]
    pred = y ^ ((i * 7 + j * 3) % 11 == 0)
    # columns in another order, with one extra unscored column, probabilities instead of decisions
    order = np.arange(26)[::-1]
    codes = [CINC2021_SCORED[k] for k in order] + ["164884008"]
    labels = np.c_[y[:, order], np.ones(len(y))]
    probs = np.c_[np.where(pred[:, order], 0.9, 0.1), np.full(len(y), 0.99)]
    assert challenge_score_of_columns(labels, probs, codes) == pytest.approx(0.5994459274752092, abs=1e-12)
    probs[:, 0] = np.nan  # TInv has no model output: never predicted
    expected = pred.copy()
    expected[:, 25] = False
    assert challenge_score_of_columns(labels, probs, codes) == pytest.approx(cinc2021_challenge_score(y, expected))
    assert challenge_score_of_columns(labels[:, -1:], probs[:, -1:], codes[-1:]) is None
