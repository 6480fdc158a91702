{#-
  model_quality(scored, outcomes, model_ref, key, score, outcome, version='model_version',
                scored_at='scored_at', window='week', threshold=0.5, input_hash='input_hash',
                training_rows='exclude')

  Quality in production once outcomes arrive: the scored relation (a key, the score, the version that
  scored the row, when it was scored) joined with an outcomes relation (the key and the outcome, which
  may arrive days or months later), per model version and window ('day', 'week' or 'month' of the
  scoring time). One row per version, window and metric:
    rows_scored, labels_arrived, label_coverage (labels_arrived / rows_scored)
    binary:      auc (ties averaged), log_loss, brier, accuracy, and at `threshold` (score >= it: predicted
                 positive) precision, recall, f1 and the counts true_positives, false_positives,
                 false_negatives, true_negatives, all of the positive class
    regression:  rmse, mae, mape, mean_bias (score - outcome); with a Poisson, Gamma or Tweedie loss,
                 mean_deviance too
  each beside the version's holdout value from its manifest (holdout_value; the classification counts and
  rates there are at 0.5), and which way the metric is better (better: 'higher', 'lower' or 'nearer_zero';
  none for a count). The score is the version's probability of its positive class (what predict() returns).
  The outcome is read as each version reads outcomes (udfs/outcomes.py): a binary model's class label (text,
  or a number where the classes are numbers), else a BOOLEAN or 0/1 meaning "is the positive class"; any
  other value or type stops the model naming the outcome column, its type and the classes.
  A model is not graded on the rows it learned from: where the scored relation carries the rows' input hashes
  (the column `input_hash`, written by scorehouse.input_hash()), the rows whose hash is among those that
  trained the version (recorded at registration) are left out (training_rows='include' keeps them), and the
  metric training_rows counts them per window (NULL where it cannot be told: no input_hash column, or a
  version registered before training rows were recorded). rows_scored and labels_arrived count the rows the
  metrics are measured on.
  Tag the model `scorehouse_quality` and every build appends its rows to quality_history
  (record_quality_history); guard it with expect_model_quality_above.
-#}
{% macro model_quality(scored, outcomes, model_ref, key, score, outcome, version='model_version',
                       scored_at='scored_at', window='week', threshold=0.5, input_hash='input_hash',
                       training_rows='exclude') -%}
  {{ return(adapter.dispatch('model_quality', 'scorehouse')(scored, outcomes, model_ref, key, score, outcome,
                                                            version, scored_at, window, threshold, input_hash,
                                                            training_rows)) }}
{%- endmacro %}

{% macro default__model_quality(scored, outcomes, model_ref, key, score, outcome, version, scored_at, window,
                                threshold, input_hash, training_rows) -%}
  {%- if training_rows not in ('exclude', 'include') -%}
    {%- do scorehouse.misconfigured("model_quality: training_rows must be 'exclude' or 'include', found '" ~ training_rows ~ "'") -%}
  {%- endif -%}
  {%- if window not in ('day', 'week', 'month') -%}
    {%- do scorehouse.misconfigured("model_quality: window must be 'day', 'week' or 'month', found '" ~ window ~ "'") -%}
  {%- endif -%}
  {%- set threshold = scorehouse.number(threshold, 'model_quality: threshold') -%}
  {%- set name = model_ref.split('@')[0] -%}
  {%- set about = scorehouse.model_about(model_ref) -%}
  {%- if about.task not in ('binary', 'regression') -%}
    {%- do scorehouse.misconfigured("model_quality: model " ~ model_ref ~ " is a " ~ about.task
                                    ~ " classifier; quality is measured for binary classifiers and regressors") -%}
  {%- endif -%}
  {%- set versions = [] -%}
  {%- if execute -%}
    {%- set versions = run_query("select distinct " ~ scorehouse.identifier(version) ~ " from " ~ scored
                                 ~ " where " ~ scorehouse.identifier(version) ~ " is not null").columns[0].values() -%}
  {%- endif -%}
  {%- set binary = about.task == 'binary' -%}
  {%- set hashed = execute and input_hash and scored.identifier is defined
                   and input_hash | lower in (scorehouse.column_types(scored).keys() | map('lower') | list) -%}
  {%- set recorded = [] -%}
  {%- for v in versions if hashed and scorehouse.training_rows_recorded(name ~ '@' ~ (v | int)) -%}
    {%- do recorded.append(v | int) -%}
  {%- endfor -%}
  {%- if execute and not hashed -%}
    {%- do log("scorehouse: model_quality of " ~ model_ref ~ " on " ~ scored ~ " cannot tell the rows the model was "
               ~ "trained on from new ones (no column " ~ input_hash ~ "; add {{ scorehouse.input_hash('" ~ name
               ~ "', relation=...) }} as " ~ input_hash ~ " to it): its metrics may include them", info=true) -%}
  {%- endif -%}
with scored_rows as (
    select s.{{ scorehouse.identifier(key) }} as scored_key, cast(s.{{ scorehouse.identifier(score) }} as double) as p,
           s.{{ scorehouse.identifier(version) }} as model_version,
           cast(date_trunc({{ scorehouse.literal(window) }}, s.{{ scorehouse.identifier(scored_at) }}) as timestamp) as window_start,
           {% if hashed %}substr(cast(s.{{ scorehouse.identifier(input_hash) }} as {{ dbt.type_string() }}), 1, 16){% else %}cast(null as {{ dbt.type_string() }}){% endif %} as row_hash
    from {{ scored }} as s
),
trained as (
    {%- for v in recorded %}
    select {{ v }} as model_version, row_hash from {{ scorehouse.training_rows(name, v) }} as t{{ v }} union all
    {%- endfor %}
    select cast(null as {{ dbt.type_int() }}) as model_version, cast(null as {{ dbt.type_string() }}) as row_hash
    from (select 1 as one) as nothing where 1 = 0
),
marked as (
    select r.*,
           case when {% if recorded %}r.row_hash is null or r.model_version not in ({{ recorded | join(', ') }}){% else %}1 = 1{% endif %} then null
                when t.row_hash is not null then 1 else 0 end as trained_on
    from scored_rows as r
    left join trained as t on t.model_version = r.model_version and t.row_hash = r.row_hash
),
counted as (
    select model_version, window_start, sum(trained_on) as training_rows from marked group by model_version, window_start
),
outcome_rows as (
    select o.{{ scorehouse.identifier(key) }} as __scorehouse_key, o.{{ scorehouse.identifier(outcome) }}
    from {{ outcomes }} as o
    where o.{{ scorehouse.identifier(outcome) }} is not null
),
joined as (
    select r.model_version, r.window_start, r.p,
           case when l.__scorehouse_key is null then null
           {%- for v in versions %}
                when r.model_version = {{ v | int }} then {{ scorehouse.outcome_value(name ~ '@' ~ (v | int), 'l', outcome) }}
           {%- endfor %}
           end as y
    from marked as r
    left join outcome_rows as l on r.scored_key = l.__scorehouse_key
    {%- if training_rows == 'exclude' %}
    where r.trained_on is null or r.trained_on = 0
    {%- endif %}
),
{%- if binary %}
ranks as ({{ scorehouse.auc_by('joined', ['model_version', 'window_start'], 'p', 'y') }}),
{%- endif %}
windows as (
    select j.model_version, j.window_start, count(*) as rows_scored, count(j.y) as labels_arrived,
           {% if binary %}{{ scorehouse.classification_aggregates('j.p', 'j.y', threshold) }}
           {%- else %}{{ scorehouse.regression_aggregates('j.p', 'j.y', about.tweedie_power) }}{% endif %}
    from joined as j
    group by j.model_version, j.window_start
),
measured as (
    {%- set metrics = scorehouse.quality_metrics(about) %}
    {%- for metric in metrics %}
    select w.model_version, w.window_start, w.rows_scored, w.labels_arrived,
           {{ scorehouse.literal(metric) }} as metric,
           {% if metric == 'auc' %}a.auc{% else %}cast(w.{{ scorehouse.identifier(metric) }} as double){% endif %} as value
    from windows as w
    {%- if metric == 'auc' %}
    left join ranks as a on a.model_version = w.model_version and a.window_start = w.window_start
    {%- endif %}
    union all
    {%- endfor %}
    select c.model_version, c.window_start, w.rows_scored, w.labels_arrived, 'training_rows' as metric,
           cast(c.training_rows as double) as value
    from counted as c
    join windows as w on w.model_version = c.model_version and w.window_start = c.window_start
),
holdout as (
    {%- for v in versions %}
    select model_version, metric, value from {{ scorehouse.profile_relation('metrics', name ~ '@' ~ (v | int)) }}
    {%- if not loop.last %} union all{% endif %}
    {%- endfor %}
    {%- if not versions %}
    select cast(null as {{ dbt.type_int() }}) as model_version, cast(null as {{ dbt.type_string() }}) as metric,
           cast(null as double) as value from (select 1 as one) as nothing where 1 = 0
    {%- endif %}
)
select {{ scorehouse.literal(name) }} as model_name, m.model_version, {{ scorehouse.literal(window) }} as window_unit,
       m.window_start, m.rows_scored, m.labels_arrived,
       cast(m.labels_arrived as double) / m.rows_scored as label_coverage,
       m.metric, m.value, h.value as holdout_value,
       {{ scorehouse.metric_better_case('m.metric', metrics) }} as better
from measured as m
left join holdout as h on h.model_version = m.model_version and h.metric = m.metric
{%- endmacro %}


{#- quality_metrics(about): the metrics model_quality measures for a model's task (and loss) -#}
{% macro quality_metrics(about) -%}
  {%- if about.task == 'binary' -%}
    {{ return(['auc', 'log_loss', 'brier', 'accuracy', 'precision', 'recall', 'f1'] + scorehouse.confusion_counts()) }}
  {%- endif -%}
  {{ return(['rmse', 'mae', 'mape', 'mean_bias'] + (['mean_deviance'] if about.tweedie_power is not none else [])) }}
{%- endmacro %}

{#- confusion_counts(): the count metrics of a binary model at its threshold, of the positive class -#}
{% macro confusion_counts() -%}
  {{ return(['true_positives', 'false_positives', 'false_negatives', 'true_negatives']) }}
{%- endmacro %}

{#- counts(): the metrics that count rows, which no gate judges: the confusion counts and training_rows -#}
{% macro counts() -%}
  {{ return(scorehouse.confusion_counts() + ['training_rows']) }}
{%- endmacro %}


{#- training_rows(name, version): a relation of the hashes (row_hash) of the rows that trained the version -#}
{% macro training_rows(name, version) -%}
  {{ return(adapter.dispatch('training_rows', 'scorehouse')(name, version)) }}
{%- endmacro %}

{% macro default__training_rows(name, version) -%}
  scorehouse_training_rows({{ scorehouse.literal(name ~ '@' ~ version) }})
{%- endmacro %}

{#- Spark: one temporary view holding every version's, registered by scorehouse.spark.register -#}
{% macro spark__training_rows(name, version) -%}
  (select row_hash from scorehouse_training_rows where model_name = {{ scorehouse.literal(name) }} and model_version = {{ version | int }})
{%- endmacro %}

{#- training_rows_recorded(model_ref): whether the version recorded which rows trained it -#}
{% macro training_rows_recorded(model_ref) -%}
  {{ return(run_query("select scorehouse_training_rows_recorded(" ~ scorehouse.literal(model_ref) ~ ")").columns[0].values()[0]) }}
{%- endmacro %}


{#- outcome_value(model_ref, relation, column): SQL reading an outcome column as the version reads outcomes: 1e0,
    0e0 or NULL for a binary model, a DOUBLE for a regressor; any other value stops the query (udfs/outcomes.py) -#}
{% macro outcome_value(model_ref, relation, column) -%}
  {%- if not execute -%}{{ return('cast(null as double)') }}{%- endif -%}
  {%- set query -%}
    select scorehouse_outcome_sql({{ scorehouse.literal(model_ref) }}, {{ scorehouse.literal(relation) }}, {{ scorehouse.literal(column) }})
  {%- endset -%}
  {{ return(run_query(query).columns[0].values()[0]) }}
{%- endmacro %}


{#-
  The metric formulas, once for model_quality and compare_models (scikit-learn's definitions):
    auc_by(rows, groups, p, y)                 a query: per group, the AUC with tied scores' ranks averaged
    classification_aggregates(p, y, threshold) log_loss, brier, accuracy, precision, recall (labelled rows)
    regression_aggregates(p, y, power)         rmse, mae, mape, mean_bias; mean_deviance with a Tweedie power
  y is 1/0 (NULL: no label yet) for classification, the outcome for regression; p the score.
  Constants are written 1e0, a DOUBLE on DuckDB and Spark alike: Spark reads 1.0 as a DECIMAL, whose
  averages and ratios keep six digits.
-#}
{% macro auc_by(rows, groups, p, y) -%}
  {%- set by = groups | join(', ') -%}
select {{ by }},
       (sum(case when y = 1 then r + (ties - 1) / 2e0 else 0 end) - sum(y) * (sum(y) + 1) / 2e0)
         / nullif(sum(y) * (count(*) - sum(y)), 0) as auc
from (
    select {{ by }}, {{ y }} as y,
           rank() over (partition by {{ by }} order by {{ p }}) as r,
           count(*) over (partition by {{ by }}, {{ p }}) as ties
    from {{ rows }} where {{ y }} is not null
) as ranked
group by {{ by }}
{%- endmacro %}

{% macro classification_aggregates(p, y, threshold) -%}
  {%- set eps = 2.220446049250313e-16 -%}{#- numpy's float64 eps, which scikit-learn clips log-loss with -#}
  {%- set predicted = p ~ " >= " ~ threshold -%}
  {%- set tp = "sum(case when " ~ predicted ~ " and " ~ y ~ " = 1 then 1e0 else 0e0 end)" -%}
  {%- set fp = "sum(case when " ~ predicted ~ " and " ~ y ~ " = 0 then 1e0 else 0e0 end)" -%}
  {%- set fn = "sum(case when not (" ~ predicted ~ ") and " ~ y ~ " = 1 then 1e0 else 0e0 end)" -%}
-avg(case when {{ y }} = 1 then ln(least(greatest({{ p }}, {{ eps }}), 1 - {{ eps }}))
          when {{ y }} = 0 then ln(least(greatest(1 - {{ p }}, {{ eps }}), 1 - {{ eps }})) end) as log_loss,
avg(power({{ p }} - {{ y }}, 2)) as brier,
avg(case when {{ y }} is null then null when ({{ predicted }}) = ({{ y }} = 1) then 1e0 else 0e0 end) as accuracy,
{{ tp }} / nullif({{ tp }} + {{ fp }}, 0) as {{ scorehouse.identifier('precision') }},
{{ tp }} / nullif({{ tp }} + {{ fn }}, 0) as recall,
2 * {{ tp }} / nullif(2 * {{ tp }} + {{ fp }} + {{ fn }}, 0) as f1,
{{ tp }} as true_positives,
{{ fp }} as false_positives,
{{ fn }} as false_negatives,
sum(case when not ({{ predicted }}) and {{ y }} = 0 then 1e0 else 0e0 end) as true_negatives
{%- endmacro %}

{% macro regression_aggregates(p, y, power=none) -%}
sqrt(avg(power({{ p }} - {{ y }}, 2))) as rmse,
avg(abs({{ p }} - {{ y }})) as mae,
avg(abs({{ p }} - {{ y }}) / greatest(abs({{ y }}), 2.220446049250313e-16)) as mape,
avg({{ p }} - {{ y }}) as mean_bias
{%- if power is not none %},
avg({{ scorehouse.tweedie_deviance(y, p, power) }}) as mean_deviance
{%- endif %}
{%- endmacro %}


{#- metric_better(metric): which way a quality metric is better: 'higher', 'lower' or 'nearer_zero' (mean_bias);
    none for a count (true_positives, ...), which no gate judges -#}
{% macro metric_better(metric) -%}
  {%- if metric in ('auc', 'accuracy', 'precision', 'recall', 'f1', 'agreement', 'rank_correlation') -%}{{ return('higher') }}
  {%- elif metric == 'mean_bias' -%}{{ return('nearer_zero') }}
  {%- elif metric in scorehouse.counts() -%}{{ return(none) }}
  {%- else -%}{{ return('lower') }}{%- endif -%}
{%- endmacro %}

{#- metric_better_case(column, metrics): SQL naming which way the metric in `column` is better (NULL for a count) -#}
{% macro metric_better_case(column, metrics) -%}
case {{ column }}{% for metric in metrics if scorehouse.metric_better(metric) %} when {{ scorehouse.literal(metric) }} then {{ scorehouse.literal(scorehouse.metric_better(metric)) }}{% endfor %} end
{%- endmacro %}


{#- describe_about(about): 'binary, positive class bad' (how compare_models names what a version scores) -#}
{% macro describe_about(about) -%}
  {{ return(about.task ~ (", positive class " ~ about.positive_class if about.positive_class is not none else "")) }}
{%- endmacro %}

{#- model_about(model_ref): {task, positive_class, tweedie_power} of the version a reference points at -#}
{% macro model_about(model_ref) -%}
  {%- if not execute -%}{{ return({'task': 'binary', 'positive_class': 'true', 'tweedie_power': none}) }}{%- endif -%}
  {%- set row = run_query("select task, positive_class, max(tweedie_power) as tweedie_power from "
                          ~ scorehouse.profile_relation('metrics', model_ref) ~ " group by task, positive_class").rows[0] -%}
  {{ return({'task': row['task'], 'positive_class': row['positive_class'], 'tweedie_power': row['tweedie_power']}) }}
{%- endmacro %}


{#- tweedie_deviance(y, mu, power): the unit deviance scikit-learn's mean_tweedie_deviance averages -#}
{% macro tweedie_deviance(y, mu, power) -%}
  {%- if power == 0 -%}
    power({{ y }} - {{ mu }}, 2)
  {%- elif power == 1 -%}
    2 * ((case when {{ y }} > 0 then {{ y }} * ln({{ y }} / {{ mu }}) else 0 end) - {{ y }} + {{ mu }})
  {%- elif power == 2 -%}
    2 * (ln({{ mu }} / {{ y }}) + {{ y }} / {{ mu }} - 1)
  {%- else -%}
    2 * (power(greatest({{ y }}, 0), 2 - {{ power }}) / ((1 - {{ power }}) * (2 - {{ power }}))
         - {{ y }} * power({{ mu }}, 1 - {{ power }}) / (1 - {{ power }}) + power({{ mu }}, 2 - {{ power }}) / (2 - {{ power }}))
  {%- endif -%}
{%- endmacro %}


{#-
  compare_models(relation, champion, challenger, key, outcomes=none, outcome=none, threshold=0.5)

  Champion and challenger on the same rows of `relation` (each reference scored in the same query, e.g.
  'mortgage_deny' and 'mortgage_deny@candidate'). One row per metric:
    agreement       share of rows both put on the same side of `threshold` (classifiers)
    mean_abs_delta  mean |challenger score - champion score|
    rank_correlation  Spearman's correlation of the two scores (ties ranked by their average)
    score_psi       population stability index of the challenger's scores against the champion's, on
                    10 equal-width bins over both (an empty bin counts as 1e-4)
  and, with an outcomes relation (key, outcome), each version's quality on the labelled rows:
  auc, log_loss, brier (classifiers) or rmse, mae (regressors), in champion_value and challenger_value,
  value = challenger - champion; better says which way a metric is better ('higher' or 'lower').
  Guard a promotion with expect_challenger_not_worse.
-#}
{% macro compare_models(relation, champion, challenger, key, outcomes=none, outcome=none, threshold=0.5) -%}
  {%- set threshold = scorehouse.number(threshold, 'compare_models: threshold') -%}
  {%- set about = scorehouse.model_about(champion) -%}
  {%- set theirs = scorehouse.model_about(challenger) -%}
  {%- if about.task not in ('binary', 'regression') -%}
    {%- do scorehouse.misconfigured("compare_models: model " ~ champion ~ " is a " ~ about.task
                                    ~ " classifier; champion and challenger are compared for binary classifiers and regressors") -%}
  {%- elif (theirs.task, theirs.positive_class) != (about.task, about.positive_class) -%}
    {%- do scorehouse.misconfigured("compare_models: " ~ champion ~ " (" ~ scorehouse.describe_about(about) ~ ") and "
                                    ~ challenger ~ " (" ~ scorehouse.describe_about(theirs) ~ ") do not score the same thing") -%}
  {%- endif -%}
  {%- if outcomes is not none and outcome is none -%}
    {%- do scorehouse.misconfigured("compare_models: outcomes is given without outcome, the column holding the outcome") -%}
  {%- endif -%}
  {%- set binary = about.task == 'binary' -%}
  {%- set eps = 1e-4 -%}
with scored as (
    select f.{{ scorehouse.identifier(key) }} as row_key,
           {{ scorehouse.predict(champion, relation='f') }} as champion_score,
           {{ scorehouse.predict(challenger, relation='f') }} as challenger_score
    from {{ relation }} as f
),
labelled as (
    select s.*, {% if outcomes is none %}cast(null as double) as y_champion, cast(null as double) as y_challenger
    {%- else %}{{ scorehouse.outcome_value(champion, 'o', outcome) }} as y_champion,
           {{ scorehouse.outcome_value(challenger, 'o', outcome) }} as y_challenger{% endif %}
    from scored as s
    {%- if outcomes is not none %}
    left join (select {{ scorehouse.identifier(key) }} as __scorehouse_key, {{ scorehouse.identifier(outcome) }}
               from {{ outcomes }}) as o on o.__scorehouse_key = s.row_key
    {%- endif %}
),
sides as (
    select 'champion' as side, champion_score as p, y_champion as y from labelled
    union all
    select 'challenger' as side, challenger_score as p, y_challenger as y from labelled
),
ranked as (
    select champion_score, challenger_score,
           rank() over (order by champion_score) + (count(*) over (partition by champion_score) - 1) / 2e0 as r1,
           rank() over (order by challenger_score) + (count(*) over (partition by challenger_score) - 1) / 2e0 as r2
    from labelled
),
bounds as (
    select least(min(champion_score), min(challenger_score)) as low,
           greatest(max(champion_score), max(challenger_score)) as high
    from labelled
),
binned as (
    select s.side, least(cast(floor((s.p - b.low) / nullif(b.high - b.low, 0) * 10) as int), 9) as bin
    from sides as s cross join bounds as b
),
shares as (
    select bin,
           greatest(sum(case when side = 'champion' then 1e0 else 0e0 end) / (select count(*) from labelled), {{ eps }}) as expected,
           greatest(sum(case when side = 'challenger' then 1e0 else 0e0 end) / (select count(*) from labelled), {{ eps }}) as actual
    from (select side, coalesce(bin, 0) as bin from binned) as b
    group by bin
),
quality as (
    select side, count(y) as labelled_rows,
           {% if binary %}{{ scorehouse.classification_aggregates('p', 'y', threshold) }}
           {%- else %}{{ scorehouse.regression_aggregates('p', 'y') }}{% endif %}
    from sides group by side
),
{%- if binary %}
aucs as ({{ scorehouse.auc_by('sides', ['side'], 'p', 'y') }}),
{%- endif %}
comparisons as (
    {%- if binary %}
    select 'agreement' as metric, cast(null as double) as champion_value, cast(null as double) as challenger_value,
           avg(case when (champion_score >= {{ threshold }}) = (challenger_score >= {{ threshold }}) then 1e0 else 0e0 end) as value
    from labelled
    union all
    {%- endif %}
    select 'mean_abs_delta' as metric, cast(null as double) as champion_value, cast(null as double) as challenger_value,
           avg(abs(challenger_score - champion_score)) as value from labelled
    union all
    select 'rank_correlation', cast(null as double), cast(null as double), corr(r1, r2) from ranked
    union all
    select 'score_psi', cast(null as double), cast(null as double), sum((actual - expected) * ln(actual / expected)) from shares
    {%- if outcomes is not none %}
    {%- for metric in (['auc', 'log_loss', 'brier'] if binary else ['rmse', 'mae']) %}
    union all
    {%- set source = 'aucs' if metric == 'auc' else 'quality' %}
    {#- scalar subqueries: the row stays (NULL) where a side has no labelled rows, so no gate reads it as absent #}
    select {{ scorehouse.literal(metric) }}, c.v, h.v, h.v - c.v
    from (select (select {{ metric }} from {{ source }} where side = 'champion') as v) as c
    cross join (select (select {{ metric }} from {{ source }} where side = 'challenger') as v) as h
    {%- endfor %}
    {%- endif %}
)
select {{ scorehouse.literal(champion) }} as champion, {{ scorehouse.literal(challenger) }} as challenger,
       {{ scorehouse.model_version(champion) }} as champion_version,
       {{ scorehouse.model_version(challenger) }} as challenger_version,
       (select count(*) from labelled) as rows_compared,
       (select count(y_champion) from labelled) as labelled_rows,
       metric, champion_value, challenger_value, value,
       {{ scorehouse.metric_better_case('metric', ['agreement', 'mean_abs_delta', 'rank_correlation', 'score_psi',
                                                   'auc', 'log_loss', 'brier', 'rmse', 'mae']) }} as better
from comparisons
{%- endmacro %}
