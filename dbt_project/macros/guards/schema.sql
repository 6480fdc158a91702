{#-
  schema_rows: every feature of the model the relation lacks, or holds with an incompatible type.
  The relation's columns are read when the test compiles (just before it runs) and checked by the
  same rules predict() applies.
-#}
{% macro schema_problems(relation, model_ref) -%}
  {%- if not execute -%}{{ return([]) }}{%- endif -%}
  {%- set found = scorehouse.column_types(relation) -%}
  {%- set query -%}
    select scorehouse_schema_problems({{ scorehouse.literal(model_ref) }}, {{ scorehouse.literal(tojson(found)) }})
  {%- endset -%}
  {{ return(fromjson(run_query(query).columns[0].values()[0])) }}
{%- endmacro %}


{% macro schema_rows(relation, model_ref) -%}
  {%- set problems = scorehouse.schema_problems(relation, model_ref) -%}
  {%- if problems | length == 0 -%}{{ return(scorehouse.no_guard_rows()) }}{%- endif -%}
  {%- set rows -%}
    {%- for p in problems %}
    select {{ scorehouse.literal(p.model_name) }} as model_name, {{ p.model_version | int }} as model_version,
           {{ scorehouse.literal(p.feature) }} as feature, {{ scorehouse.literal('schema_' ~ p.problem) }} as metric,
           0.0 as baseline_value, 1.0 as current_value,
           {{ scorehouse.literal('expected ' ~ p.expected ~ ', found ' ~ p.found) }} as detail
    {%- if not loop.last %} union all{% endif %}
    {%- endfor -%}
  {%- endset -%}
  {{ return(rows) }}
{%- endmacro %}


{#- no_guard_rows: an empty result with the columns every metric macro returns. -#}
{% macro no_guard_rows() -%}
  select cast(null as {{ dbt.type_string() }}) as model_name, cast(null as {{ dbt.type_int() }}) as model_version,
         cast(null as {{ dbt.type_string() }}) as feature, cast(null as {{ dbt.type_string() }}) as metric,
         cast(null as double) as baseline_value, cast(null as double) as current_value,
         cast(null as {{ dbt.type_string() }}) as detail
  from (select 1 as one) as nothing where 1 = 0
{%- endmacro %}
