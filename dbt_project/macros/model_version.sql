{#- model_version(model_ref): the registry version `predict(model_ref)` scores with in this build. -#}
{% macro model_version(model_ref) -%}
  {{ return(adapter.dispatch('model_version', 'scorehouse')(model_ref)) }}
{%- endmacro %}

{% macro default__model_version(model_ref) -%}
  scorehouse_model_version({{ scorehouse.literal(model_ref) }})
{%- endmacro %}
