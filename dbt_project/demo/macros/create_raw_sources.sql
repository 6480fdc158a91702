{#-
  create_raw_sources(): make the `raw` CSV sources readable (on-run-start).
  DuckDB reads them in place through each source's `external_location`: nothing to do.
  Spark gets an external CSV table per source, every column a string, as DuckDB's all_varchar.
-#}
{% macro create_raw_sources() -%}
  {{ return(adapter.dispatch('create_raw_sources', 'scorehouse_demo')()) }}
{%- endmacro %}

{% macro default__create_raw_sources() -%}
  {{ return('') }}
{%- endmacro %}

{% macro spark__create_raw_sources() -%}
  {%- if not execute -%}{{ return('') }}{%- endif -%}
  {%- for source in graph.sources.values() if source.source_name == 'raw' -%}
    {%- set columns = [] -%}
    {%- for name in source.columns.keys() -%}{%- do columns.append(scorehouse.identifier(name) ~ " string") -%}{%- endfor -%}
    {%- do run_query("create schema if not exists " ~ scorehouse.identifier(source.schema)) -%}
    {%- do run_query("create table if not exists " ~ scorehouse.identifier(source.schema) ~ "." ~ scorehouse.identifier(source.identifier)
          ~ " (" ~ (columns | join(', ')) ~ ") using csv options (path "
          ~ scorehouse.literal(var('data_dir') ~ "/" ~ source.identifier ~ ".csv") ~ ", header 'true')") -%}
  {%- endfor -%}
  {{ return('') }}
{%- endmacro %}
