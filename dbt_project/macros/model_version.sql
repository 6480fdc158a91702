{#-
  model_version(model_ref, relation=none, key=none): the registry version `predict(model_ref)` scores with
  in this build. With `key` (and `relation`, as given to predict()), the version that scored each row
  during a gray release: the rollout's version for keys in its share, else the prod version.
-#}
{% macro model_version(model_ref, relation=none, key=none) -%}
  {{ return(adapter.dispatch('model_version', 'scorehouse')(model_ref, relation, key)) }}
{%- endmacro %}

{% macro default__model_version(model_ref, relation=none, key=none) -%}
  {%- if key is none -%}
    {{ return("scorehouse_model_version(" ~ scorehouse.literal(model_ref) ~ ")") }}
  {%- endif -%}
  {%- if not execute -%}{{ return("null") }}{%- endif -%}
  {%- set query -%}
    select scorehouse_version_sql({{ scorehouse.literal(model_ref) }}, {{ scorehouse.literal(relation or '') }}, {{ scorehouse.literal(key) }})
  {%- endset -%}
  {{ return(run_query(query).columns[0].values()[0]) }}
{%- endmacro %}
