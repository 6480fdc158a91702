"""Sample weights (`weight:` in a spec): in the fit, the holdout metrics and the training profile."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from scorehouse.errors import SpecError
from scorehouse.registration.spec import parse_spec
from scorehouse.registration.training import prepare, read_source, train

WEIGHTED = "select *, case when pbcr = 'yes' then 3.0 else 1.0 end as weight from features_mortgage"


def spec(query=WEIGHTED, weight="weight"):
    raw = {
        "name": "weighted",
        "task": "binary",
        "target": "is_denied",
        "source": {"query": query},
        "estimator": {"kind": "logistic_regression", "params": {"max_iter": 2000}},
        "features": {"numeric": ["dir", "lvr", "ccs"], "categorical": ["pbcr", "dmi"]},
    }
    return parse_spec({**raw, "weight": weight} if weight else raw)


def test_weights_reach_the_fit_the_metrics_and_the_profile(small):
    weighted, plain = spec(), spec(weight=None)
    table = read_source(weighted, small.warehouse)
    candidate = train(weighted, table)
    unweighted = train(plain, read_source(plain, small.warehouse))
    data = prepare(weighted, table)  # the same split train() drew
    # the profile: the share of 'yes' counts each such row three times
    pbcr, w = data.x_train["pbcr"].to_numpy(), data.w_train
    present = pbcr != ""
    expected_yes = w[present & (pbcr == "yes")].sum() / w[present].sum()
    assert candidate.manifest["profile"]["features"]["pbcr"]["shares"]["yes"] == pytest.approx(expected_yes)
    assert unweighted.manifest["profile"]["features"]["pbcr"]["shares"]["yes"] < expected_yes
    assert candidate.manifest["training_data"]["weight"] == "weight"
    # the metrics are weighted by the holdout's weights
    scores = candidate.pipeline.predict_proba(data.x_test)[:, 1]
    assert candidate.manifest["metrics"]["auc"] == pytest.approx(
        roc_auc_score(data.y_test == "true", scores, sample_weight=data.w_test)
    )
    # and the fit: the coefficients move
    assert not np.allclose(candidate.pipeline[-1].coef_, unweighted.pipeline[-1].coef_)


@pytest.mark.parametrize(
    "expression, message",
    [
        ("case when pbcr = 'yes' then null else 1.0 end", "found 175 NULL and 0 negative of 2381 rows"),
        ("case when pbcr = 'yes' then -1.0 else 1.0 end", "found 0 NULL and 175 negative of 2381 rows"),
        ("pbcr", "weight column 'weight' has type VARCHAR; weights are numbers"),
    ],
)
def test_bad_weights_are_one_line(small, expression, message):
    bad = spec(f"select *, {expression} as weight from features_mortgage")
    with pytest.raises(SpecError, match=message):
        train(bad, read_source(bad, small.warehouse))


def test_a_weight_that_is_also_a_feature_is_refused():
    with pytest.raises(SpecError, match="the weight column 'lvr' is also the target or a feature"):
        spec(weight="lvr")
