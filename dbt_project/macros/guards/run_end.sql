{#-
  on-run-end hooks (dbt_project.yml):
    report_guard_failures(results)  prints each failing guard row, so the build log names the features
    record_drift_history()          appends this build's metrics for every monitored model to drift_history
  A model downstream of the guarded features would be skipped exactly when they drift, so the history
  is written by a hook, which runs whatever the build's outcome.
-#}
{% macro report_guard_failures(results) -%}
  {%- if not execute -%}{{ return('') }}{%- endif -%}
  {%- for result in results if result.node.resource_type == 'test' and result.status in ('fail', 'warn')
                              and 'scorehouse_guard' in result.node.tags and result.node.relation_name -%}
    {%- set rows = run_query("select * from " ~ result.node.relation_name ~ " order by level, feature, metric") -%}
    {%- do log("scorehouse guard " ~ (result.status | upper) ~ " " ~ result.node.name ~ ":", info=true) -%}
    {%- for row in rows -%}
      {%- set detail = row['detail'] or (
            row['metric'] ~ " " ~ ("%.4g" | format(row['current_value']))
            ~ " (training " ~ ("%.4g" | format(row['baseline_value'])) ~ "; warn above "
            ~ ("%.4g" | format(row['warn_above'])) ~ ", error above " ~ ("%.4g" | format(row['error_above'])) ~ ")") -%}
      {%- do log("  " ~ row['level'] ~ ": model " ~ row['model_name'] ~ " v" ~ row['model_version']
                 ~ ", feature " ~ row['feature'] ~ ": " ~ detail, info=true) -%}
    {%- endfor -%}
  {%- endfor -%}
  {{ return('') }}
{%- endmacro %}


{% macro record_drift_history() -%}
  {%- if not execute or flags.WHICH not in ('build', 'run') -%}{{ return('') }}{%- endif -%}
  {%- set database = target.database or none -%}{#- Spark has no databases -#}
  {%- set history = api.Relation.create(database=database, schema=target.schema, identifier='drift_history') -%}
  {%- set statements = [] -%}
  {%- for monitor in var('scorehouse_monitors', []) -%}
    {%- set relation = adapter.get_relation(database=database, schema=target.schema, identifier=monitor.relation) -%}
    {%- set resolves = run_query("select scorehouse_resolves(" ~ scorehouse.literal(monitor.model_ref) ~ ")").columns[0].values()[0] -%}
    {%- if relation is not none and resolves -%}
      {%- set levels -%}
        select {{ scorehouse.literal(invocation_id) }} as invocation_id, current_timestamp as recorded_at,
               {{ scorehouse.literal(monitor.model_ref) }} as model_ref, {{ scorehouse.literal(monitor.relation) }} as input_relation, levels.*
        from ({{ scorehouse.stability_levels(relation, monitor.model_ref) }}) as levels
      {%- endset -%}
      {%- do statements.append("create table if not exists " ~ history ~ " as select * from (" ~ levels ~ ") as l where 1 = 0") -%}
      {%- do statements.append("insert into " ~ history ~ " " ~ levels) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(scorehouse.hook_statements(statements)) }}
{%- endmacro %}


{#- hook_statements(statements): run them in order (one transaction on DuckDB); the hook's SQL is then empty -#}
{% macro hook_statements(statements) -%}
  {%- for statement in statements -%}{%- do run_query(statement) -%}{%- endfor -%}
  {%- if statements and target.type == 'duckdb' -%}{%- do adapter.commit() -%}{%- endif -%}
  {{ return('') }}
{%- endmacro %}
