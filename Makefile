# scorehouse: `make demo` builds and scores the demo warehouse; `make test` runs the test suite.
# Both create .venv and install the project first, so they work on a fresh clone.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DBT := $(BIN)/dbt
DEMO := dbt_project/demo
DBT_ARGS := --project-dir $(DEMO) --profiles-dir $(CURDIR)
# The demo's scorehouse.yml says where its registry and warehouse are: commands run in its folder.
SCOREHOUSE := cd $(DEMO) && $(abspath $(BIN))/scorehouse
PYTEST_ARGS ?=

# dbt must not try to reach its telemetry endpoint from an offline machine.
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export DO_NOT_TRACK := 1

.PHONY: setup demo demo-drift demo-spark lint test test-fast docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	touch $@

setup: $(STAMP)

demo: setup
	@echo "== 1/5 install the scorehouse dbt package, build the training tables (staging and features)"
	$(DBT) deps $(DBT_ARGS)
	$(DBT) build $(DBT_ARGS) --exclude tag:scoring tag:scorehouse_guard
	@echo "== 2/5 train, check and register the demo models; prod points at them"
	$(SCOREHOUSE) train training/mortgage_deny.yml training/diamond_price.yml --alias prod
	@echo "== 3/5 a challenger for mortgage_deny (other hyper-parameters) at the alias candidate, on 10% of applications"
	$(SCOREHOUSE) train training/mortgage_deny_challenger.yml --alias candidate
	$(SCOREHOUSE) rollout mortgage_deny candidate --share 10 --reason "gray release of the challenger"
	@echo "== 4/5 dbt build: staging, features, scored marts, quality once decisions arrive, the comparison, tests"
	$(DBT) build $(DBT_ARGS) --vars '{mortgage_challenger: mortgage_deny@candidate}'
	@echo "== 5/5 after the build: the quality gates (scorehouse monitor; --rollback-on-error rolls prod back)"
	$(SCOREHOUSE) monitor --target-path target
	@echo "== summary"
	@$(SCOREHOUSE) models
	@$(SCOREHOUSE) sql "select 'mart_mortgage_risk' as mart, model_name, model_version, count(*) as rows_scored, \
	    (select count(*) from features_mortgage) as input_rows from mart_mortgage_risk group by all \
	  union all select 'mart_diamond_prices', model_name, model_version, count(*), \
	    (select count(*) from features_diamonds) from mart_diamond_prices group by all order by all"
	@$(SCOREHOUSE) sql "select application_id, round(deny_probability, 4) as deny_probability, predicted_deny, \
	    actual_denied, model_name, model_version from mart_mortgage_risk order by deny_probability desc limit 5"
	@echo "== why: the features that pushed each denied application's score up most (explain(), TreeSHAP)"
	@$(SCOREHOUSE) sql "select application_id, round(deny_probability, 3) as deny_probability, model_version, \
	    deny_reasons from mart_mortgage_risk where predicted_deny order by deny_probability desc limit 3"
	@$(SCOREHOUSE) sql "select diamond_id, round(predicted_price) as predicted_price, listed_price, \
	    round(residual) as residual, model_name, model_version from mart_diamond_prices limit 5"
	@echo "== quality once decisions arrive: each version on the applications it scored, beside its holdout"
	@$(SCOREHOUSE) sql "select model_version, cast(window_start as date) as week, rows_scored, labels_arrived, \
	    round(label_coverage, 2) as coverage, metric, round(value, 4) as value, round(holdout_value, 4) as holdout \
	    from quality_mortgage where metric in ('auc', 'brier', 'accuracy') order by all"
	@echo "== champion (prod) against challenger (candidate) on every application"
	@$(SCOREHOUSE) sql "select champion_version, challenger_version, rows_compared, labelled_rows, metric, \
	    round(champion_value, 4) as champion, round(challenger_value, 4) as challenger, round(value, 4) as difference, \
	    better from comparison_mortgage order by metric"
	@$(SCOREHOUSE) history mortgage_deny
	@echo "== what each mart was scored with, and from which rows (scoring_runs); one row re-scored"
	@$(SCOREHOUSE) sql "select scored_relation, model_name, model_version, method, left(artifact_sha256, 12) as sha256, \
	    input_relation, rows_in, rows_out, input_fingerprint from scoring_runs \
	    where invocation_id = (select max_by(invocation_id, finished_at) from scoring_runs) order by all"
	@$(SCOREHOUSE) reproduce mart_mortgage_risk application_id=17
	@echo "== BI tools read the marts from the serving file, replaced whole by each build"
	@$(SCOREHOUSE) --warehouse warehouse/scorehouse_serving.duckdb sql "select * from scorehouse_publication order by mart"

demo-drift: demo
	@echo "== a broken upstream batch: dir in percent, 30% of lvr NULL, a new category in self"
	$(BIN)/python $(DEMO)/data/broken_batch.py $(DEMO)/warehouse/broken_batch
	@if $(DBT) build $(DBT_ARGS) --vars '{data_dir: $(abspath $(DEMO))/warehouse/broken_batch}'; then \
	    echo "error: the guards let the broken batch through"; exit 1; \
	else echo "== the guards stopped the build above; mart_mortgage_risk kept its previous rows"; fi
	@$(SCOREHOUSE) sql "select model_ref, feature, metric, round(baseline_value, 4) as training, \
	    round(current_value, 4) as current, error_above, level from drift_history \
	    where level is not null and recorded_at = (select max(recorded_at) from drift_history) order by all"
	@echo "== back to the clean batch"
	$(DBT) build $(DBT_ARGS)

demo-spark: demo
	@echo "== the same dbt project on Spark local[2]: guards, then scored marts (Parquet under warehouse/spark)"
	$(BIN)/python spark_jobs/dbt_build.py
	@cd $(DEMO) && $(abspath $(BIN))/python -c "import duckdb; print(duckdb.sql(\"select 'mart_mortgage_risk' as mart, model_name, model_version, count(*) as rows_scored, round(avg(deny_probability), 4) as mean_score from read_parquet('warehouse/spark/scorehouse.db/mart_mortgage_risk/*.parquet') group by all union all select 'mart_diamond_prices', model_name, model_version, count(*), round(avg(predicted_price), 1) from read_parquet('warehouse/spark/scorehouse.db/mart_diamond_prices/*.parquet') group by all\"))"

# ruff's rules and layout (run `ruff format` to apply it) and mypy's types (settings in pyproject.toml).
lint: setup
	$(BIN)/ruff check udfs tests bench spark_jobs
	$(BIN)/ruff format --check udfs tests bench spark_jobs
	$(BIN)/mypy

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Unit tests that need neither dbt nor Spark (real DuckDB, onnxruntime and the CLI), on every core: about two
# minutes on 2 cores.
test-fast: setup
	$(BIN)/python -m pytest -m "not dbt and not spark" -n auto $(PYTEST_ARGS)

# The documentation site (docs/pages, the README as its home page) into build/site; strict: a broken link fails.
docs: setup
	cd docs && NO_MKDOCS_2_WARNING=1 $(abspath $(BIN))/mkdocs build --strict -q -f mkdocs.yml

# Every comparison side by side (about 30 minutes on 2 cores); writes bench/RESULTS.md. BENCH_ARGS="--sizes 1000000" for a short run.
bench: setup
	$(BIN)/pip install -q -e '.[bench,spark]'
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(DEMO)/warehouse $(DEMO)/registry $(DEMO)/target $(DEMO)/logs $(DEMO)/dbt_packages
