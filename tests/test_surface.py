"""The declared SQL surface (udfs/surface.py) is what each engine has, what the docs list and what
`scorehouse functions` prints."""

import subprocess
import sys
from pathlib import Path

import duckdb

import scorehouse.duckdb as engine
from scorehouse.surface import ANALYSTS, DBT, FUNCTIONS, WRITERS, declared, reference_table

from helpers import ROOT

BIN = Path(sys.executable).parent


def function_names(con) -> set[str]:
    return {row[0] for row in con.execute("select distinct function_name from duckdb_functions()").fetchall()}


def test_duckdb_creates_exactly_the_declared_names(small):
    bare = duckdb.connect()
    con = engine.connect(small.warehouse, small.registry_path, read_only=True)
    try:
        created = function_names(con) - function_names(bare)
        assert created == set(declared("duckdb", ["mortgage_deny", "mortgage_logit"]))
    finally:
        con.close()
        bare.close()


def test_every_declaration_is_complete_and_every_name_is_ours():
    for f in FUNCTIONS:
        assert f.audience in ("analysts", "dbt", "internal") and f.engines and f.summary and f.returns, f
        assert f.name.startswith(("predict", "explain", "score", "scorehouse_")), f.name
    for writer in WRITERS:  # the writer helpers: one text argument per parameter after (scorer, engine)
        assert len(writer.argument_types) == len(writer.call.split(", ")), writer.name
    names = [(f.name, engine_) for f in FUNCTIONS for engine_ in f.engines]
    assert len(names) == len(set(names))  # one declaration per name and engine


def test_the_docs_and_scorehouse_functions_print_the_declared_table():
    page = (ROOT / "docs" / "pages" / "sql.md").read_text()
    listed = page.split("<!-- functions -->\n", 1)[1].split("\n<!-- /functions -->", 1)[0]
    assert listed == reference_table((ANALYSTS,)), "docs/pages/sql.md's table is reference_table((ANALYSTS,))"
    printed = subprocess.run([str(BIN / "scorehouse"), "functions"], capture_output=True, text=True, check=True)
    assert printed.stdout.strip() == reference_table((ANALYSTS, DBT))
    assert "| `predict` |" in printed.stdout and "| `scorehouse_predict_sql` |" in printed.stdout
    everything = subprocess.run(
        [str(BIN / "scorehouse"), "functions", "--all"], capture_output=True, text=True, check=True
    ).stdout
    assert "| `scorehouse_check_input` |" in everything and "scorehouse_check_input" not in printed.stdout
