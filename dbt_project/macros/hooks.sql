{#-
  The package's on-run-end hooks (dbt_project.yml). They run in the project that installs the package,
  with no configuration; each is switched off by its own var and by nothing else:
    report_guard_failures(results)  prints each failing guard row, so the build log names the features
                                    (var scorehouse_guard_summary: false to switch it off)
    publish_marts(results)          copies the marts tagged `published` to the serving file (publish.sql)
                                    (var scorehouse_publish: false)
    record_drift_history()          appends the metrics of every guarded input to drift_history
                                    (var scorehouse_drift_history: false)
    record_scoring_runs(results)    appends one row per scored relation and model version built by the run
                                    to scoring_runs (var scorehouse_scoring_runs: false)
    record_quality_history(results) appends the rows of every model tagged `scorehouse_quality` (a
                                    model_quality relation) built by the run to quality_history
                                    (var scorehouse_quality_history: false)
  A model downstream of the guarded features would be skipped exactly when they drift, so the history
  is written by a hook, which runs whatever the build's outcome.
-#}
{% macro hook_enabled(name) -%}
  {{ return(execute and var(name, true) not in (false, 'false', 'False', 0)) }}
{%- endmacro %}


{% macro report_guard_failures(results) -%}
  {%- if not scorehouse.hook_enabled('scorehouse_guard_summary') -%}{{ return('') }}{%- endif -%}
  {%- for result in results if result.node.resource_type == 'test' and result.status in ('fail', 'warn')
                              and 'scorehouse_guard' in result.node.tags and result.node.relation_name -%}
    {%- set rows = run_query("select * from " ~ result.node.relation_name ~ " order by 1, 2, 3, 4") -%}
    {%- do log("scorehouse guard " ~ (result.status | upper) ~ " " ~ result.node.name ~ ":", info=true) -%}
    {%- for row in rows | sort(attribute='level') -%}
      {%- do log("  " ~ row['level'] ~ ": " ~ scorehouse.guard_line(row, 'feature' in rows.column_names), info=true) -%}
    {%- endfor -%}
  {%- endfor -%}
  {{ return('') }}
{%- endmacro %}


{#- guard_line(row, per_feature): one failing guard row as the build log prints it, e.g.
    `model m v1, feature lvr: NULL share 0.31 against 0.01 in training (an increase of 0.3; warn above 0.02, error above 0.05)` -#}
{% macro guard_line(row, per_feature) -%}
  {%- set subject = "model " ~ row['model_name'] ~ " v" ~ row['model_version'] ~ (", feature " ~ row['feature'] if per_feature else "") -%}
  {%- set limits = "warn above " ~ ("%.4g" | format(row['warn_above'])) ~ ", error above " ~ ("%.4g" | format(row['error_above'])) -%}
  {%- if row['detail'] -%}
    {{ return(subject ~ ": " ~ row['detail']) }}
  {%- elif row['metric'] == 'null_rate_increase' -%}
    {{ return(subject ~ ": NULL share " ~ ("%.4g" | format(row['current_value'])) ~ " against "
              ~ ("%.4g" | format(row['baseline_value'])) ~ " in training (an increase of "
              ~ ("%.4g" | format(row['current_value'] - row['baseline_value'])) ~ "; " ~ limits ~ ")") }}
  {%- endif -%}
  {{ return(subject ~ ": " ~ row['metric'] ~ " " ~ ("%.4g" | format(row['current_value'])) ~ " (" ~ limits ~ ")") }}
{%- endmacro %}


{#-
  guarded_inputs(): {model_ref, relation node} for every relation a scorehouse input guard tests in this
  project (every guard but expect_output_drift_below), plus the optional var scorehouse_monitors
  ([{model_ref: ..., relation: <model, seed or table name>}]) for inputs without a guard.
-#}
{% macro guarded_inputs() -%}
  {%- set found = {} -%}
  {%- for test in graph.nodes.values() if test.resource_type == 'test' and test.test_metadata
        and test.test_metadata.namespace == 'scorehouse' and test.test_metadata.name.startswith('expect_')
        and test.test_metadata.name != 'expect_output_drift_below' -%}
    {%- set model_ref = test.test_metadata.kwargs.get('model_ref') -%}
    {%- for tested in test.depends_on.nodes[:1] -%}
      {%- set node = graph.nodes.get(tested) or graph.sources.get(tested) -%}
      {%- if node and model_ref -%}
        {%- do found.update({model_ref ~ ' ' ~ node.unique_id: {'model_ref': model_ref, 'node': node}}) -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endfor -%}
  {%- for monitor in var('scorehouse_monitors', []) -%}
    {%- set nodes = graph.nodes.values() | selectattr('name', 'equalto', monitor.relation)
                    | selectattr('resource_type', 'in', ['model', 'seed', 'snapshot']) | list -%}
    {%- if nodes -%}
      {%- do found.update({monitor.model_ref ~ ' ' ~ nodes[0].unique_id: {'model_ref': monitor.model_ref, 'node': nodes[0]}}) -%}
    {%- else -%}
      {%- do log("scorehouse: drift history skips monitor " ~ monitor.model_ref ~ " on " ~ monitor.relation
                 ~ ": this project has no model, seed or snapshot named " ~ monitor.relation, info=true) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(found.values() | list) }}
{%- endmacro %}


{% macro record_drift_history() -%}
  {%- if not scorehouse.records_enabled('scorehouse_drift_history') -%}{{ return('') }}{%- endif -%}
  {%- set selects = [] -%}
  {%- for monitor in scorehouse.guarded_inputs() -%}
    {%- set node = monitor.node -%}
    {%- set relation = adapter.get_relation(database=node.database, schema=node.schema,
                                            identifier=node.identifier or node.alias or node.name) -%}
    {%- set resolves = run_query("select scorehouse_resolves(" ~ scorehouse.literal(monitor.model_ref) ~ ")").columns[0].values()[0] -%}
    {%- if relation is none -%}
      {%- do log("scorehouse: drift history skips " ~ monitor.model_ref ~ " on " ~ node.name
                 ~ ": the relation does not exist (not built yet?)", info=true) -%}
    {%- elif not resolves -%}
      {%- do log("scorehouse: drift history skips " ~ monitor.model_ref ~ " on " ~ node.name
                 ~ ": the model reference does not resolve in the registry", info=true) -%}
    {%- else -%}
      {%- set levels -%}
        select {{ scorehouse.literal(invocation_id) }} as invocation_id, current_timestamp as recorded_at,
               {{ scorehouse.literal(monitor.model_ref) }} as model_ref, {{ scorehouse.literal(node.name) }} as input_relation, levels.*
        from ({{ scorehouse.stability_levels(relation, monitor.model_ref) }}) as levels
      {%- endset -%}
      {%- do selects.append(levels) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(scorehouse.hook_statements(scorehouse.append_rows('drift_history', selects))) }}
{%- endmacro %}


{% macro record_quality_history(results) -%}
  {%- if not scorehouse.records_enabled('scorehouse_quality_history') -%}{{ return('') }}{%- endif -%}
  {%- set selects = [] -%}
  {%- for result in results if result.node.resource_type == 'model' and result.status == 'success'
                              and 'scorehouse_quality' in result.node.tags -%}
    {%- set rows -%}
      select {{ scorehouse.literal(invocation_id) }} as invocation_id, current_timestamp as recorded_at,
             {{ scorehouse.literal(result.node.name) }} as quality_relation, q.*
      from {{ result.node.relation_name }} as q
    {%- endset -%}
    {%- do selects.append(rows) -%}
  {%- endfor -%}
  {{ return(scorehouse.hook_statements(scorehouse.append_rows('quality_history', selects))) }}
{%- endmacro %}


{#- records_enabled(var): a history hook runs after `build` and `run`, unless its var is false -#}
{% macro records_enabled(name) -%}
  {{ return(scorehouse.hook_enabled(name) and flags.WHICH in ('build', 'run')) }}
{%- endmacro %}


{#- hook_statements(statements): run them in order (one transaction on DuckDB); the hook's SQL is then empty -#}
{% macro hook_statements(statements) -%}
  {%- for statement in statements -%}{%- do run_query(statement) -%}{%- endfor -%}
  {%- if statements and target.type == 'duckdb' -%}{%- do adapter.commit() -%}{%- endif -%}
  {{ return('') }}
{%- endmacro %}


{#-
  record_scoring_runs(results): for every model the run built that calls predict() or score() (as dbt's
  parse recorded in its meta: see record_scoring), one row per model version it scored with: the version and
  sha256 of its model.onnx, the method (sql, onnx or steps), the relation and its input (the model's one
  parent, when it has one), rows in and out, the input's fingerprint and schema hash (udfs/fingerprint.py:
  equal on DuckDB and Spark for the same rows, whatever their order), and when the model started and
  finished building. Under a gray release the rows, out and in, and the
  fingerprint are each version's own (rows_of_version): the versions of one relation add up to its rows.
-#}
{% macro record_scoring_runs(results) -%}
  {%- if not scorehouse.records_enabled('scorehouse_scoring_runs') -%}{{ return('') }}{%- endif -%}
  {%- set selects = [] -%}
  {%- for result in results if result.node.resource_type == 'model' and result.status == 'success' -%}
    {%- set node = result.node -%}
    {%- set notes = {} -%}
    {%- for name, call in (node.config.meta or {}).items() | sort if name.startswith('scorehouse:scoring ') -%}
      {%- set query -%}
        select scorehouse_scoring_note({{ scorehouse.literal(call.ref) }}, {{ scorehouse.literal(call.output) }}, {{ scorehouse.literal(call.method) }}, {{ scorehouse.literal(call.key) }}, {{ scorehouse.literal(call.form) }})
      {%- endset -%}
      {%- for note in fromjson(run_query(query).columns[0].values()[0]) -%}{%- do notes.update({note.model ~ '@' ~ note.version: note}) -%}{%- endfor -%}
    {%- endfor -%}
    {%- set parents = [] -%}
    {%- for parent in node.depends_on.nodes -%}
      {%- set found = graph.nodes.get(parent) or graph.sources.get(parent) -%}
      {%- if found and found.resource_type in ('model', 'seed', 'snapshot', 'source') -%}{%- do parents.append(found) -%}{%- endif -%}
    {%- endfor -%}
    {%- set timing = result.timing | selectattr('name', 'equalto', 'execute') | list -%}
    {%- for key, note in notes | dictsort -%}
      {%- set only_in, only_out = scorehouse.rows_of_version(node, note) -%}
      {%- if parents | length == 1 -%}
        {%- set source = parents[0].relation_name ~ only_in -%}
        {%- set input = run_query("select scorehouse_fingerprint_sql(" ~ scorehouse.literal(key) ~ ", " ~ scorehouse.literal(source) ~ ")").columns[0].values()[0] -%}
        {%- set input_name = parents[0].name -%}
      {%- else -%}
        {%- set input = "select cast(null as bigint) as rows_in, cast(null as " ~ dbt.type_string() ~ ") as input_fingerprint, cast(null as " ~ dbt.type_string() ~ ") as schema_hash" -%}
        {%- set input_name = none -%}
      {%- endif -%}
      {%- set row -%}
        select {{ scorehouse.literal(invocation_id) }} as invocation_id,
               {{ scorehouse.literal(node.name) }} as scored_relation,
               {{ scorehouse.literal(input_name) if input_name else "cast(null as " ~ dbt.type_string() ~ ")" }} as input_relation,
               {{ scorehouse.literal(note.model) }} as model_name, cast({{ note.version | int }} as int) as model_version,
               {{ scorehouse.literal(note.ref) }} as model_ref, {{ scorehouse.literal(note.sha256) }} as artifact_sha256,
               {{ scorehouse.literal(note.method) }} as method,
               i.rows_in, o.rows_out, i.input_fingerprint, i.schema_hash,
               cast({{ scorehouse.literal(timing[0].started_at.isoformat() if timing else '') }} as timestamp) as started_at,
               cast({{ scorehouse.literal(timing[0].completed_at.isoformat() if timing else '') }} as timestamp) as finished_at
        from ({% if only_out is none %}select cast(null as bigint) as rows_out{% else %}select count(*) as rows_out from {{ node.relation_name }}{{ only_out }}{% endif %}) as o
        cross join ({{ input }}) as i
      {%- endset -%}
      {%- do selects.append(row) -%}
    {%- endfor -%}
  {%- endfor -%}
  {{ return(scorehouse.hook_statements(scorehouse.append_rows('scoring_runs', selects))) }}
{%- endmacro %}


{#-
  rows_of_version(node, note): the filters (' where ...', or '') keeping, of the input and of the scored relation,
  the rows the note's version scored. Without a gray release every row; under one, the rows the routed reference
  sends to the version by their key (scorehouse_version_sql, the expression predict() and model_version() route
  by), in the scored relation by the same key where it has that column, else by its model_version column; a
  scored relation with neither has no count of its own (none), rather than a wrong one.
-#}
{% macro rows_of_version(node, note) -%}
  {%- if not note.get('routed') -%}{{ return(('', '')) }}{%- endif -%}
  {%- set routed = note['routed'] -%}
  {%- set query -%}
    select scorehouse_version_sql({{ scorehouse.literal(routed.ref) }}, '', {{ scorehouse.literal(routed.key) }})
  {%- endset -%}
  {%- set only = " where " ~ run_query(query).columns[0].values()[0] ~ " = " ~ (note.version | int) -%}
  {%- set scored = adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias or node.name) -%}
  {%- set columns = (adapter.get_columns_in_relation(scored) | map(attribute='name') | map('lower') | list) if scored else [] -%}
  {%- if routed.key | lower in columns -%}
    {{ return((only, only)) }}
  {%- elif 'model_version' in columns -%}
    {{ return((only, " where " ~ scorehouse.identifier('model_version') ~ " = " ~ (note.version | int))) }}
  {%- endif -%}
  {{ return((only, none)) }}
{%- endmacro %}
