"""Every exported tree splits float32 inputs as its library does: 1M rows of the demo's data, half of them with
their numbers moved onto the float32 values beside the trees' thresholds, score in onnxruntime exactly as in
the library; a graph that routes a threshold's neighbour otherwise is refused at registration."""

import re

import duckdb
import numpy as np
import onnx
import pandas as pd
import pyarrow as pa
import pytest

import scorehouse.duckdb
from scorehouse.errors import ParityError
from scorehouse.model import LoadedModel
from scorehouse.registration.spec import parse_spec
from scorehouse.registration.training import PROBABILITY_TOLERANCE, VALUE_RTOL, class_names, train
from scorehouse.registry import Registry
from scorehouse.schema import model_inputs
from scorehouse.scoring import Session

from helpers import MORTGAGE_FEATURES_SQL, PROJECT

ROWS = 1_000_000
# The demo's diamonds without dbt (stg_diamonds, features_diamonds).
DIAMONDS_FEATURES_SQL = """
create table features_diamonds as
select cast(column00 as integer) as diamond_id, cast(carat as double) as carat, cut, color, clarity,
       cast(depth as double) as depth_pct, cast("table" as double) as table_pct,
       cast(nullif(cast(x as double), 0) as double) as length_mm,
       cast(nullif(cast(y as double), 0) as double) as width_mm,
       cast(nullif(cast(z as double), 0) as double) as height_mm, cast(price as integer) as price
from read_csv(?, header = true)
"""
# (table, target, numeric, categorical); 20,000 diamonds are trained on, to keep the fits short
MORTGAGE = (
    "features_mortgage",
    "is_denied",
    ["dir", "hir", "lvr", "ccs", "mcs", "uria"],
    ["pbcr", "dmi", "self", "single", "condominium"],
)
DIAMONDS = (
    "features_diamonds",
    "price",
    ["carat", "depth_pct", "table_pct", "length_mm", "width_mm", "height_mm"],
    ["cut", "color", "clarity"],
)
# name -> (task, kind, params, source)
CASES = {
    "lightgbm_binary": ("binary", "lightgbm", {"n_estimators": 100}, MORTGAGE),
    "lightgbm_regression": ("regression", "lightgbm", {"n_estimators": 100}, DIAMONDS),
    "gbt_binary": ("binary", "gradient_boosting", {"n_estimators": 100, "max_depth": 3, "random_state": 0}, MORTGAGE),
    "forest_regression": (
        "regression",
        "random_forest",
        {"n_estimators": 20, "max_depth": 10, "random_state": 0},
        DIAMONDS,
    ),
    "hgb_binary": ("binary", "hist_gradient_boosting", {"max_iter": 100, "random_state": 0}, MORTGAGE),
    "hgb_regression": ("regression", "hist_gradient_boosting", {"max_iter": 100, "random_state": 0}, DIAMONDS),
    "xgboost_binary": ("binary", "xgboost", {"n_estimators": 100}, MORTGAGE),
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    path = tmp_path_factory.mktemp("thresholds") / "features.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(MORTGAGE_FEATURES_SQL, [str(PROJECT / "data" / "hmda_boston.csv")])
        con.execute(DIAMONDS_FEATURES_SQL, [str(PROJECT / "data" / "diamonds.csv")])
    return path


@pytest.fixture(scope="module")
def trained(warehouse):
    """trained(name): the case trained on its source's rows, once per module: (candidate, rows, numeric features)."""
    models = {}

    def model(name):
        if name not in models:
            task, kind, params, (table, target, numeric, categorical) = CASES[name]
            spec = parse_spec(
                {
                    "name": name,
                    "task": task,
                    "target": target,
                    "source": {"table": table},
                    "estimator": {"kind": kind, "params": params},
                    "features": {"numeric": numeric, "categorical": categorical},
                }
            )
            with duckdb.connect(str(warehouse), read_only=True) as con:
                rows = con.sql(f"select * from {table} order by 1 limit 20000").to_arrow_table()
            models[name] = (train(spec, rows), rows, numeric)
        return models[name]

    return model


def library_thresholds(estimator) -> tuple[np.ndarray, np.ndarray]:
    """(column, threshold) of every split, read from the library's own model (not from scorehouse)."""
    module = type(estimator).__module__.split(".")[0]
    if module == "lightgbm":
        frame = estimator.booster_.trees_to_dataframe().dropna(subset=["split_feature"])
        return frame["split_feature"].str.removeprefix("Column_").astype(int).to_numpy(), frame["threshold"].to_numpy()
    if module == "xgboost":
        frame = estimator.get_booster().trees_to_dataframe().query("Feature != 'Leaf'")
        return frame["Feature"].str.removeprefix("f").astype(int).to_numpy(), frame["Split"].to_numpy()
    if hasattr(estimator, "_predictors"):
        nodes = np.concatenate([tree.nodes for trees in estimator._predictors for tree in trees])
        nodes = nodes[nodes["is_leaf"] == 0]
        return nodes["feature_idx"].astype(int), nodes["num_threshold"]
    trees = [tree.tree_ for tree in np.ravel(estimator.estimators_)]
    return (
        np.concatenate([t.feature[t.feature >= 0] for t in trees]),
        np.concatenate([t.threshold[t.feature >= 0] for t in trees]),
    )


def beside_thresholds(rows: pa.Table, numeric: list[str], estimator, seed: int = 0) -> pa.Table:
    """ROWS rows resampled from `rows`; in the second half each number, one time in two, is replaced by a float32
    value at or beside one of the thresholds the trees split it on (the float32 nearest the threshold and
    the float32 values on either side of that one)."""
    rng = np.random.default_rng(seed)
    resampled = rows.take(rng.integers(0, rows.num_rows, ROWS))
    column, threshold = library_thresholds(estimator)
    half = np.arange(ROWS // 2, ROWS)
    columns = {name: resampled.column(name) for name in resampled.column_names}
    for position, name in enumerate(numeric):  # the pipeline's first columns are the numbers, in spec order
        nearest = np.unique(threshold[column == position].astype(np.float32))
        if not len(nearest):
            continue
        beside = np.unique(
            np.concatenate(
                [np.nextafter(nearest, np.float32(-np.inf)), nearest, np.nextafter(nearest, np.float32(np.inf))]
            )
        )
        values = columns[name].to_numpy(zero_copy_only=False).astype(np.float64)
        moved = half[rng.random(len(half)) < 0.5]
        values[moved] = beside[rng.integers(0, len(beside), len(moved))]
        columns[name] = pa.array(values, pa.float64(), mask=np.isnan(values))
    return pa.table(columns)


def library_answers(candidate, table: pa.Table) -> np.ndarray:
    """The fitted pipeline's own values (regression) or probabilities (in the registry's class order), fed the
    inputs onnxruntime is fed."""
    pipeline, model = candidate.pipeline, LoadedModel(candidate.manifest, candidate.onnx_bytes)
    columns = {f.name: table.column(f.name) for f in model.features}
    frame = pd.DataFrame(
        {name: values.reshape(-1) for name, values in model_inputs("m", model.features, columns).items()}
    )
    if model.task == "regression":
        return pipeline.predict(frame)
    names = class_names(pipeline.classes_, model.classes)
    return pipeline.predict_proba(frame)[:, [names.index(c) for c in model.classes]]


def misrouted(candidate, table: pa.Table) -> tuple[int, float]:
    """(rows where onnxruntime and the library differ beyond float32 arithmetic, the largest difference)."""
    model = LoadedModel(candidate.manifest, candidate.onnx_bytes)
    feeds = model.inputs({f.name: table.column(f.name) for f in model.features})
    want = library_answers(candidate, table)
    if model.task == "regression":
        got = model.run(feeds, ["value"])["value"].reshape(-1)
        tolerance = VALUE_RTOL * max(1.0, float(np.abs(want).mean()))
    else:
        got = model.run(feeds, ["probabilities"])["probabilities"]
        tolerance = PROBABILITY_TOLERANCE
    diff = np.abs(got.astype(np.float64) - want).reshape(len(want), -1).max(axis=1)
    return int((diff > tolerance).sum()), float(diff.max())


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_million_rows_at_the_thresholds_score_as_the_library_does(trained, name):
    candidate, rows, numeric = trained(name)
    table = beside_thresholds(rows, numeric, candidate.pipeline[-1])
    count, worst = misrouted(candidate, table)
    assert count == 0, f"{name}: {count} of {ROWS} rows routed unlike the library (max |difference| {worst:.3g})"
    parity = candidate.manifest["parity"]
    splits = len(library_thresholds(candidate.pipeline[-1])[0])
    assert parity["splits_checked"] == splits
    if CASES[name][1] in ("lightgbm", "hist_gradient_boosting"):  # the converters round to the nearest float32
        assert 0 < parity["thresholds_adjusted"] < splits
    else:  # skl2onnx rounds decision trees' thresholds down; XGBoost's are float32 already
        assert parity["thresholds_adjusted"] == 0


def test_predict_sql_and_the_table_form_split_as_the_library_does(warehouse, tmp_path):
    """predict()'s expression and the table form's steps are written from explain.json, which keeps the
    library's own thresholds: both score the million rows beside them as LightGBM does."""
    task, kind, _, (source, target, numeric, categorical) = CASES["lightgbm_binary"]
    spec = parse_spec(
        {
            "name": "small_lightgbm",
            "task": task,
            "target": target,
            "source": {"table": source},
            "estimator": {"kind": kind, "params": {"n_estimators": 20, "num_leaves": 8}},
            "features": {"numeric": numeric, "categorical": categorical},
        }
    )
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.sql(f"select * from {source} order by 1").to_arrow_table()
    candidate = train(spec, rows)
    assert candidate.manifest["sql"]["ok"] and candidate.manifest["parity"]["thresholds_adjusted"] > 0
    registry = Registry(tmp_path / "registry")
    registry.promote("small_lightgbm", registry.register(candidate.manifest, candidate.files))
    table = beside_thresholds(rows, numeric, candidate.pipeline[-1])
    table = table.append_column("row_id", pa.array(np.arange(table.num_rows)))
    want = library_answers(candidate, table)
    database = tmp_path / "rows.duckdb"
    with duckdb.connect(str(database)) as con:
        con.register("rows_beside", table)
        con.execute("create table beside as select * from rows_beside")
    with scorehouse.duckdb.connect(database, registry.root, read_only=True) as con:
        expression = scorehouse.duckdb.predict_sql(Session(registry), "small_lightgbm", "r", "score", "sql")
        paths = {
            "sql": f"select {expression} as v from beside as r order by row_id",
            "table form": "select prediction as v from score('small_lightgbm', 'beside') order by row_id",
        }
        steps = con.sql("select scorehouse_table_query('small_lightgbm', 'beside')").fetchall()[0][0]
        assert "__scorehouse_step" in steps and not re.search(r"\bpredict(_\w+)?\(", steps)  # not row by row
        for path, query in paths.items():
            got = con.sql(query).fetchnumpy()["v"]
            off = np.abs(np.asarray(got, dtype=np.float64) - want[:, 1]) > PROBABILITY_TOLERANCE
            assert not off.any(), f"{path}: {off.sum()} of {len(off)} rows routed unlike LightGBM"


def test_explanations_keep_the_library_thresholds(trained):
    candidate, _, _ = trained("lightgbm_binary")
    recorded = np.concatenate(
        [np.asarray(tree.threshold)[np.asarray(tree.left) >= 0] for tree in candidate.explanation.trees]
    )
    _, threshold = library_thresholds(candidate.pipeline[-1])
    assert sorted(recorded.tolist()) == sorted(threshold.tolist())
    assert (recorded.astype(np.float32).astype(np.float64) != recorded).sum() > 0.5 * len(recorded)


def test_the_graph_onnxmltools_writes_for_lightgbm_is_refused(trained):
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    from scorehouse.registration.thresholds import check_thresholds

    candidate, _, _ = trained("lightgbm_binary")
    estimator = candidate.pipeline[-1]
    names = list(candidate.pipeline[:-1].get_feature_names_out())
    parity = candidate.manifest["parity"]
    assert check_thresholds(onnx.load_from_string(candidate.onnx_bytes), estimator, "m", names) == {
        "splits_checked": parity["splits_checked"]
    }
    # the converter's own graph: every threshold rounded to the nearest float32
    converted = convert_lightgbm(estimator, initial_types=[("x", FloatTensorType([None, len(names)]))], zipmap=False)
    with pytest.raises(
        ParityError,
        match=rf"^Model m: {parity['thresholds_adjusted']} of {parity['splits_checked']} "
        r"tree splits send float32 values beside their threshold the other way in "
        r"the ONNX graph than LightGBM does \(worst: tree \d+ node \d+, '\w+': the "
        r"library goes left for x <= .*, the graph for x <= .*\); not registered$",
    ):
        check_thresholds(converted, estimator, "m", names)


def test_a_graph_whose_trees_are_not_the_models_is_refused(trained):
    from scorehouse.registration.thresholds import check_thresholds

    lightgbm, _, _ = trained("lightgbm_binary")
    xgboost, _, _ = trained("xgboost_binary")
    with pytest.raises(
        ParityError,
        match=r"^Model m: the ONNX graph's tree 0 node 0 does not match LightGBM's trees "
        r"\(.*\); its thresholds cannot be checked, not registered$",
    ):
        check_thresholds(onnx.load_from_string(xgboost.onnx_bytes), lightgbm.pipeline[-1], "m")


def test_lightgbm_sending_zeros_to_the_missing_side_is_refused(warehouse):
    """zero_as_missing: LightGBM sends |x| <= 1e-35 to a split's missing side, which no ONNX split can do."""
    task, kind, _, (source, target, numeric, categorical) = CASES["lightgbm_binary"]
    spec = parse_spec(
        {
            "name": "zeros",
            "task": task,
            "target": target,
            "source": {"table": source},
            "estimator": {"kind": kind, "params": {"n_estimators": 20, "zero_as_missing": True}},
            "features": {"numeric": numeric, "categorical": categorical},
        }
    )
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.sql(f"select * from {source} order by 1").to_arrow_table()
    with pytest.raises(
        ParityError,
        match=r"^Model zeros: \d+ of \d+ LightGBM splits send zeros to their missing-value "
        r"side \(zero_as_missing\), where the ONNX graph's threshold sends them the "
        r"other way; not registered. Fit it with zero_as_missing: false$",
    ):
        train(spec, rows)
