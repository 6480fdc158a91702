{#-
  Quoting: every name and text scorehouse writes into SQL goes through these two macros (the twin of
  udfs/sql.py's Dialect). DuckDB doubles a quote inside a literal; Spark also reads a backslash as an
  escape, so it is doubled too. Identifiers double their quote character.
-#}
{% macro literal(value) -%}
  {{ return(adapter.dispatch('literal', 'scorehouse')(value)) }}
{%- endmacro %}

{% macro default__literal(value) -%}
  {{ return("'" ~ (value | string | replace("'", "''")) ~ "'") }}
{%- endmacro %}

{% macro spark__literal(value) -%}
  {{ return("'" ~ (value | string | replace("\\", "\\\\") | replace("'", "''")) ~ "'") }}
{%- endmacro %}


{% macro identifier(name) -%}
  {{ return(adapter.dispatch('identifier', 'scorehouse')(name)) }}
{%- endmacro %}

{% macro default__identifier(name) -%}
  {{ return('"' ~ (name | string | replace('"', '""')) ~ '"') }}
{%- endmacro %}

{% macro spark__identifier(name) -%}
  {{ return('`' ~ (name | string | replace('`', '``')) ~ '`') }}
{%- endmacro %}


{#- column_types(relation): the relation's columns from the catalog, name -> type (what the scorehouse
    functions' `columns` arguments take, as JSON) -#}
{% macro column_types(relation) -%}
  {%- set found = {} -%}
  {%- for column in adapter.get_columns_in_relation(relation) -%}
    {%- do found.update({column.name: column.dtype}) -%}
  {%- endfor -%}
  {{ return(found) }}
{%- endmacro %}


{#- literal_list(values): 'a', 'b' (null when empty, so `in (...)` stays valid) -#}
{% macro literal_list(values) -%}
  {%- set quoted = [] -%}
  {%- for value in values -%}{%- do quoted.append(scorehouse.literal(value)) -%}{%- endfor -%}
  {{ return(quoted | join(', ') if quoted else 'null') }}
{%- endmacro %}


{#- float32(expression): a number as float32, as the model sees it; beyond float32's range, ±inf (udfs/sql.py) -#}
{% macro float32(expression) -%}
  {{ return(adapter.dispatch('float32', 'scorehouse')(expression)) }}
{%- endmacro %}

{% macro default__float32(expression) -%}
  {%- set double = "try_cast(" ~ expression ~ " as double)" -%}
  {{ return("coalesce(try_cast(" ~ expression ~ " as float), case when " ~ double ~ " > 0 then cast('inf' as float) when "
            ~ double ~ " < 0 then cast('-inf' as float) end)") }}
{%- endmacro %}

{% macro spark__float32(expression) -%}
  {{ return("cast(" ~ expression ~ " as float)") }}
{%- endmacro %}


{#- number(value, what): `value` if it is a number (not a boolean), else an error naming `what` when the test or
    model runs (at parse time 0, so that one misconfigured node fails alone and the others build) -#}
{% macro number(value, what) -%}
  {%- if value is not number or value is boolean -%}
    {%- do scorehouse.misconfigured(what ~ " must be a number, found '" ~ value ~ "'") -%}
    {{ return(0) }}
  {%- endif -%}
  {{ return(value) }}
{%- endmacro %}


{#- misconfigured(message): stop the node that runs with `message`; nothing at parse time -#}
{% macro misconfigured(message) -%}
  {%- if execute -%}{{ exceptions.raise_compiler_error(message) }}{%- endif -%}
{%- endmacro %}
