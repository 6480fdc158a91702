{#-
  publish_marts(results), an on-run-end hook: BI tools read a serving file, never the warehouse.

  DuckDB allows one writer per file, and a reader holding the warehouse open would stop the next build.
  So after each build the models tagged `published` are copied into a new DuckDB file beside the
  warehouse, which then replaces the serving file in one rename (`scorehouse_publish_file`). A reader
  sees the previous publication or the new one, whole, never a half-written table; a connection
  opened before the rename keeps reading the publication it opened. The rename is done by the
  scorehouse dbt plugin (`adapter.store_relation`), in the build's process: no SQL function that
  moves files exists on any connection.

  A mart is taken from this build only when it was built and none of its tests failed; otherwise the
  serving file keeps the copy it published before. `scorehouse_publication` says, per mart, which
  build published it, when and with how many rows. Spark writes its tables through its own catalog:
  nothing to publish there.

  vars: scorehouse_publish (false: no publication), scorehouse_serving_path (default: the warehouse
        file with `_serving` before `.duckdb`; a relative path is taken from the warehouse's folder),
        scorehouse_plugin (default 'scorehouse': the plugin's `alias` in profiles.yml).
-#}
{% macro publish_marts(results) -%}
  {{ return(adapter.dispatch('publish_marts', 'scorehouse')(results)) }}
{%- endmacro %}

{% macro default__publish_marts(results) -%}
  {{ return('') }}
{%- endmacro %}

{% macro duckdb__publish_marts(results) -%}
  {%- if not scorehouse.hook_enabled('scorehouse_publish') or flags.WHICH not in ('build', 'run') -%}
    {{ return('') }}
  {%- endif -%}
  {%- set fresh = scorehouse.freshly_built_marts(results) -%}
  {%- if not fresh -%}{{ return('') }}{%- endif -%}
  {%- set target_file = scorehouse.serving_path() -%}
  {%- set staged = target_file ~ '.' ~ invocation_id ~ '.tmp' -%}
  {%- set previous = scorehouse.published_tables(target_file) -%}
  {%- set published_at = "cast(" ~ scorehouse.literal(modules.datetime.datetime.now(modules.pytz.utc).isoformat()) ~ " as timestamp with time zone)" -%}
  {%- set copies = ["attach " ~ scorehouse.literal(staged) ~ " as scorehouse_staged",
                    "create table scorehouse_staged.main.scorehouse_publication (mart varchar, rows bigint, "
                    ~ "invocation_id varchar, published_at timestamp with time zone)"] -%}
  {%- for node in graph.nodes.values() | sort(attribute='name')
        if node.resource_type == 'model' and 'published' in node.tags -%}
    {%- set mart = scorehouse.literal(node.name) -%}
    {%- set table = scorehouse.identifier(node.name) -%}
    {%- if node.unique_id in fresh -%}
      {%- do copies.append("create table scorehouse_staged.main." ~ table ~ " as select * from " ~ node.relation_name) -%}
      {%- do copies.append("insert into scorehouse_staged.main.scorehouse_publication select " ~ mart
                           ~ ", count(*), " ~ scorehouse.literal(invocation_id) ~ ", " ~ published_at ~ " from " ~ node.relation_name) -%}
    {%- elif node.name in (previous or []) -%}
      {%- do copies.append("create table scorehouse_staged.main." ~ table ~ " as select * from scorehouse_previous.main." ~ table) -%}
      {%- do copies.append("insert into scorehouse_staged.main.scorehouse_publication select * from "
                           ~ "scorehouse_previous.main.scorehouse_publication where mart = " ~ mart) -%}
      {%- do log("scorehouse: " ~ node.name ~ " was not built or failed a test; serving keeps its previous publication", info=true) -%}
    {%- endif -%}
  {%- endfor -%}
  {#- DuckDB detaches a database only in a transaction with no work on it: copy, detach, rename -#}
  {%- do scorehouse.hook_statements(copies) -%}
  {%- do scorehouse.hook_statements(["detach scorehouse_staged"]
                                    + (["detach scorehouse_previous"] if previous is not none else [])) -%}
  {%- do adapter.store_relation(var('scorehouse_plugin', 'scorehouse'), api.Relation.create(identifier='scorehouse_publication'),
                                [], staged, 'scorehouse_serving', {'serving_path': target_file}) -%}
  {%- do log("scorehouse: published " ~ (fresh | length) ~ " mart(s) from this build to " ~ target_file, info=true) -%}
  {{ return('') }}
{%- endmacro %}


{#- The unique ids of the `published` models this run built and no failing or erroring test covers -#}
{% macro freshly_built_marts(results) -%}
  {%- set built = [] -%}
  {%- set failed = [] -%}
  {%- for result in results -%}
    {%- if result.node.resource_type == 'model' and 'published' in result.node.tags and result.status == 'success' -%}
      {%- do built.append(result.node.unique_id) -%}
    {%- elif result.node.resource_type == 'test' and result.status in ('fail', 'error') -%}
      {%- do failed.extend(result.node.depends_on.nodes) -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(built | reject('in', failed) | list) }}
{%- endmacro %}


{#- The serving file: beside the warehouse file as DuckDB opened it (an absolute path) -#}
{% macro serving_path() -%}
  {%- set warehouse = run_query("select path from duckdb_databases() where database_name = current_database()").columns[0].values()[0] -%}
  {%- set folder = warehouse.rsplit('/', 1)[0] -%}
  {%- set default = warehouse[:-7] ~ '_serving.duckdb' if warehouse.endswith('.duckdb') else warehouse ~ '_serving' -%}
  {%- set chosen = var('scorehouse_serving_path', default) | string -%}
  {{ return(chosen if chosen.startswith('/') else folder ~ '/' ~ chosen) }}
{%- endmacro %}


{#- The tables of the current serving file, attached read-only as scorehouse_previous; none without one -#}
{% macro published_tables(target_file) -%}
  {%- set exists = run_query("select count(*) from glob(" ~ scorehouse.literal(target_file) ~ ")").columns[0].values()[0] -%}
  {%- if not exists -%}{{ return(none) }}{%- endif -%}
  {%- do run_query("attach " ~ scorehouse.literal(target_file) ~ " as scorehouse_previous (read_only)") -%}
  {%- set tables = run_query("select table_name from duckdb_tables() where database_name = 'scorehouse_previous'") -%}
  {{ return(tables.columns[0].values() | list) }}
{%- endmacro %}
