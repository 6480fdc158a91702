{#-
  The history tables the hooks append to (hooks.sql), each column declared once, here, in table order.
  append_rows() creates a table from its declaration, adds the declared columns a table made by an older
  release lacks (NULL in its old rows) and inserts by column name, so a new column never breaks a
  warehouse that outlives a release. Add a column at the end of its table's list; never rename or drop one.
  Kinds: text, int, bigint, double, timestamp, timestamptz (history_type gives each engine's spelling).
-#}
{% macro history_columns(table) -%}
  {%- set tables = {
    'drift_history': [
      ('invocation_id', 'text'), ('recorded_at', 'timestamptz'), ('model_ref', 'text'), ('input_relation', 'text'),
      ('model_name', 'text'), ('model_version', 'int'), ('feature', 'text'), ('metric', 'text'),
      ('baseline_value', 'double'), ('current_value', 'double'), ('warn_above', 'double'),
      ('error_above', 'double'), ('level', 'text'), ('detail', 'text')],
    'quality_history': [
      ('invocation_id', 'text'), ('recorded_at', 'timestamptz'), ('quality_relation', 'text'),
      ('model_name', 'text'), ('model_version', 'int'), ('window_unit', 'text'), ('window_start', 'timestamp'),
      ('rows_scored', 'bigint'), ('labels_arrived', 'bigint'), ('label_coverage', 'double'), ('metric', 'text'),
      ('value', 'double'), ('holdout_value', 'double'), ('better', 'text')],
    'scoring_runs': [
      ('invocation_id', 'text'), ('scored_relation', 'text'), ('input_relation', 'text'), ('model_name', 'text'),
      ('model_version', 'int'), ('model_ref', 'text'), ('artifact_sha256', 'text'), ('method', 'text'),
      ('rows_in', 'bigint'), ('rows_out', 'bigint'), ('input_fingerprint', 'text'), ('schema_hash', 'text'),
      ('started_at', 'timestamp'), ('finished_at', 'timestamp')],
  } -%}
  {%- if table not in tables -%}
    {{ exceptions.raise_compiler_error("scorehouse: no history table is named " ~ table ~ " (known: "
                                       ~ (tables.keys() | sort | join(', ')) ~ ")") }}
  {%- endif -%}
  {{ return(tables[table]) }}
{%- endmacro %}


{% macro history_type(kind) -%}
  {{ return(adapter.dispatch('history_type', 'scorehouse')(kind)) }}
{%- endmacro %}

{% macro default__history_type(kind) -%}
  {{ return({'text': 'varchar', 'int': 'integer', 'bigint': 'bigint', 'double': 'double', 'timestamp': 'timestamp',
             'timestamptz': 'timestamp with time zone'}[kind]) }}
{%- endmacro %}

{% macro spark__history_type(kind) -%}
  {{ return({'text': 'string', 'int': 'int', 'bigint': 'bigint', 'double': 'double', 'timestamp': 'timestamp',
             'timestamptz': 'timestamp'}[kind]) }}
{%- endmacro %}


{#- add_history_column(relation, name, kind): the statement adding one declared column to an existing table -#}
{% macro add_history_column(relation, name, kind) -%}
  {{ return(adapter.dispatch('add_history_column', 'scorehouse')(relation, name, kind)) }}
{%- endmacro %}

{% macro default__add_history_column(relation, name, kind) -%}
  {{ return("alter table " ~ relation ~ " add column " ~ scorehouse.identifier(name) ~ " " ~ scorehouse.history_type(kind)) }}
{%- endmacro %}

{% macro spark__add_history_column(relation, name, kind) -%}
  {{ return("alter table " ~ relation ~ " add columns (" ~ scorehouse.identifier(name) ~ " " ~ scorehouse.history_type(kind) ~ ")") }}
{%- endmacro %}


{#-
  append_rows(table, selects): the statements appending the rows of each SELECT in `selects` (each yields the
  table's declared columns, by name, in any order) to the history table `table` in the target schema: none
  when there are none; else the table created from its declaration the first time, or its missing declared
  columns added, then one insert per SELECT listing every column of the table as it is (a column only an
  older release knew gets NULL).
-#}
{% macro append_rows(table, selects) -%}
  {%- if not selects -%}{{ return([]) }}{%- endif -%}
  {%- set declared = scorehouse.history_columns(table) -%}
  {%- set relation = api.Relation.create(database=target.database or none, schema=target.schema, identifier=table) -%}
  {%- set existing = adapter.get_relation(database=relation.database, schema=relation.schema, identifier=table) -%}
  {%- set statements = [] -%}
  {%- set order = [] -%}
  {%- if existing is none -%}
    {%- set empty = [] -%}
    {%- for name, kind in declared -%}
      {%- do empty.append("cast(null as " ~ scorehouse.history_type(kind) ~ ") as " ~ scorehouse.identifier(name)) -%}
      {%- do order.append(name) -%}
    {%- endfor -%}
    {%- do statements.append("create table if not exists " ~ relation ~ " as select " ~ empty | join(', ') ~ " where 1 = 0") -%}
  {%- else -%}
    {%- for column in adapter.get_columns_in_relation(existing) -%}{%- do order.append(column.name) -%}{%- endfor -%}
    {%- set present = order | map('lower') | list -%}
    {%- for name, kind in declared if name not in present -%}
      {%- do statements.append(scorehouse.add_history_column(relation, name, kind)) -%}
      {%- do order.append(name) -%}
    {%- endfor -%}
  {%- endif -%}
  {%- set kinds = dict(declared) -%}
  {%- set values = [] -%}
  {%- for name in order -%}
    {%- if name | lower in kinds -%}
      {%- do values.append("cast(r." ~ scorehouse.identifier(name | lower) ~ " as " ~ scorehouse.history_type(kinds[name | lower]) ~ ")") -%}
    {%- else -%}
      {%- do values.append("null") -%}
    {%- endif -%}
  {%- endfor -%}
  {%- for rows in selects -%}
    {%- do statements.append("insert into " ~ relation ~ " select " ~ values | join(', ') ~ " from (" ~ rows ~ ") as r") -%}
  {%- endfor -%}
  {{ return(statements) }}
{%- endmacro %}
