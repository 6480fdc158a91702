"""The SQL that calls a session's models, in one engine's dialect.

A SqlWriter writes, for the references its Session resolved: predict()'s call (the typed or generic ONNX
function, or the model's own SQL expression, behind the input's type check), the table form's query,
explain()'s call, and a row's version (a gray release routes by a key), input hash, fingerprint and
outcome; and the notes the scoring_runs hook records. The model's own SQL comes from scorehouse.staged,
every name and literal is spelled by the Dialect (scorehouse.sql): nothing here names an engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from logging import DEBUG

from . import fingerprint, staged
from .errors import ScorehouseError
from .events import event
from .names import DEFAULT_ALIAS, ModelRef
from .outcomes import outcome_sql
from .registry import ROLLOUT_ALIAS
from .schema import type_error_parts
from .scoring import GENERIC_FUNCTIONS, Session, scoring_method
from .sql import BUCKETS, Dialect


class SqlWriter:
    """SQL for `session`'s references in `sql`'s dialect."""

    def __init__(self, session: Session, sql: Dialect):
        self.session, self.sql = session, sql

    def explain_sql(self, ref: str, relation: str, top_k: int, key: str | None = None) -> str:
        """explain(ref, <the relation's features>, top_k), the features bound by name; with `key`, a gray
        release's rows are explained by the version that scores them (as in sql_call)."""
        return self._routed(ref, relation, key, lambda each: self._explain_sql(each, relation, top_k))

    def _explain_sql(self, ref: str, relation: str, top_k: int) -> str:
        card = self.session.card(ref)
        self.session.explanation(ref)  # fails at compile time, in one line, for a version without explanations
        prefix = f"{self.sql.identifier(relation)}." if relation else ""
        struct = self.sql.struct((f.name, prefix + self.sql.identifier(f.name)) for f in card.features)
        if ref == card.name:  # the prod version: its typed explain_<model>
            return f"explain_{card.name}({struct}, {int(top_k)})"
        return f"explain({self.sql.literal(ref)}, {struct}, {int(top_k)})"

    def score_expression(self, ref: str, output: str, method: str | None = None, prefix: str = "") -> str | None:
        """The SQL expression scoring `ref` over the columns `prefix`<feature> if `method` says to use it, else
        None (the ONNX UDF). No type check: see sql_call.

        method: 'auto' (the expression for a linear model or small trees, staged.expression_reason), 'sql'
        (it, or an error saying why there is none) or 'onnx'; default: $SCOREHOUSE_SCORING, else 'auto'.
        """
        return self.scoring_choice(ref, output, method, prefix)[0]

    def scoring_choice(
        self, ref: str, output: str, method: str | None = None, prefix: str = ""
    ) -> tuple[str | None, str]:
        """(the SQL expression, or None for onnxruntime; why), as score_expression decides."""
        method = scoring_method(method)
        if method == "onnx":
            return None, "onnx asked for"
        output = self.session.card(ref).check_output(output)
        reason = (
            f"SQL is written for the score, not the {output}" if output != "score" else self.session.sql_refusal(ref)
        )
        if reason is None:
            explanation = self.session.explanation(ref)
            try:
                reason = staged.expression_reason(explanation, self.sql, forced=method == "sql")
                if reason is None:
                    return (
                        staged.score_expression(explanation, self.sql, prefix),
                        "sql asked for" if method == "sql" else "a linear model or small trees: one SQL expression",
                    )
            except staged.Unsupported as exc:
                reason = str(exc)
        if method == "sql":
            raise ScorehouseError(f"Model {self.session.describe(ref)} has no SQL expression for '{output}': {reason}")
        return None, reason

    def scoring_note(
        self,
        ref: str,
        output: str,
        method: str | None = None,
        key: str | None = None,
        scored_by: str | None = None,
    ) -> str:
        """What a predict() call scores with, as JSON for the scoring_runs hook: per version the reference
        (and a gray release's version), sha256 of its model.onnx, and the method (`scored_by` where the
        caller knows it: 'steps' for the table form's). Under a gray release each version's note also names
        the routed reference and the key (`routed`), from which the hook counts the rows each version scored
        (scorehouse_version_sql: data in the note, never SQL)."""
        route = self.route(ref, "", key)
        refs = [ref] + ([route[1]] if route else [])
        notes = []
        for each in refs:
            name, version = self.session.resolve(each)
            expression = None if scored_by else self.scoring_choice(each, output, method)[0]
            notes.append(
                {
                    "ref": each,
                    "model": name,
                    "version": version,
                    "sha256": self.session.card(each).manifest.onnx_sha256,
                    "method": scored_by or ("onnx" if expression is None else "sql"),
                    **({"routed": {"ref": ref, "key": key}} if route else {}),
                }
            )
        return json.dumps(notes)

    def call_note(
        self,
        ref: str,
        output: str,
        method: str | None = None,
        key: str | None = None,
        form: str = "predict",
    ) -> str:
        """scoring_note for one call dbt's macros recorded in a model's meta: `form` 'table' for score(),
        which scores in steps where table_sql writes them (the method 'steps'), else as predict() does."""
        if (
            form == "table"
            and self.table_sql(ref, "t", output, method, key, kept=[] if self.sql.lists_columns else None) is not None
        ):
            return self.scoring_note(ref, output, scored_by="steps")
        return self.scoring_note(ref, output, method, key)

    def outcome_sql(self, ref: str, relation: str, column: str) -> str:
        """SQL reading the outcome `column` of `relation` as the referenced version reads outcomes
        (scorehouse.outcomes)."""
        expression = (f"{self.sql.identifier(relation)}." if relation else "") + self.sql.identifier(column)
        return outcome_sql(self.session.card(ref), expression, column, self.sql)

    def input_hash_sql(self, ref: str, relation: str) -> str:
        """SQL for the hash of the current row's features as `ref`'s model sees them (scorehouse.fingerprint)."""
        return fingerprint.row_hash_sql(
            self.session.card(ref).features, f"{self.sql.identifier(relation)}." if relation else "", self.sql
        )

    def fingerprint_sql(self, ref: str, source: str) -> str:
        """`select rows_in, input_fingerprint, schema_hash` of `ref`'s features over `source` (the SQL after FROM)."""
        return fingerprint.fingerprint_select(self.session.card(ref).features, self.sql, source)

    def sql_call(
        self,
        ref: str,
        relation: str,
        output: str,
        method: str | None = None,
        key: str | None = None,
    ) -> str:
        """The SQL expression scoring `ref` on the current row, with the features bound by name.

        Where SQL is chosen (see score_expression) it is written over the relation's columns,
        behind the same type check the ONNX path makes (both engines fold it away when planning).
        Otherwise a bare model name (its prod version) calls the typed predict_<model>; other references
        and outputs call the generic predict functions. With `key` (a column) and a gray release of the
        model, rows whose key's bucket falls in the rollout's share score with the rollout's version.
        """
        return self._routed(ref, relation, key, lambda each: self._sql_call(each, relation, output, method))

    def table_sql(
        self,
        ref: str,
        source: str,
        output: str,
        method: str | None = None,
        key: str | None = None,
        column: str = "prediction",
        kept: list[str] | None = None,
        star: str | None = None,
    ) -> str | None:
        """The table form's query over `source` (a relation's SQL) in steps (scorehouse.staged): its rows (the columns
        `kept`, the SQL `star`, or all on DuckDB), the score as `column` and model_version; or None where the
        table form scores row by row instead.

        It is used for the score of a version with explanations, unless method is 'onnx', a gray release
        is in effect on `key`, or (method 'auto') staged.row_by_row_reason finds its trees too many or too deep.
        """
        method = scoring_method(method)
        card = self.session.card(ref)
        output = card.check_output(output)
        query, reason = None, None
        if method == "onnx":
            reason = "onnx asked for"
        elif output != "score":
            reason = f"its {output} output"
        elif self.route(ref, source, key) is not None:
            reason = "a gray release routes rows by the key"
        elif refusal := self.session.sql_refusal(ref):
            reason = refusal
        elif method == "sql" or not (reason := staged.row_by_row_reason(self.session.explanation(ref))):
            try:
                query = staged.scored_query(
                    self.session.explanation(ref),
                    self.sql,
                    source,
                    column,
                    lambda feature, value: self.type_checked(ref, "", value, feature),
                    [(str(self.session.resolve(ref)[1]), "model_version")],
                    kept,
                    star,
                )
            except staged.Unsupported as exc:  # e.g. a split beyond float32's range
                reason = str(exc)
        self._log_choice(
            "table_form",
            ref,
            f"table form on {self.sql.name}: " + (f"row by row: {reason}" if query is None else "in steps"),
            "row by row" if query is None else "steps",
            reason,
        )
        return query

    def version_sql(self, ref: str, relation: str = "", key: str | None = None) -> str:
        """The SQL of the version that scores the current row: a number, or the gray release's CASE on `key`."""
        return self._routed(ref, relation, key, lambda each: str(self.session.resolve(each)[1]))

    def _routed(self, ref: str, relation: str, key: str | None, write: Callable[[str], str]) -> str:
        """write(ref), or under a gray release routed by `key` the CASE choosing write(the rollout's reference)
        for the rows it takes."""
        route = self.route(ref, relation, key)
        if route is None:
            return write(ref)
        condition, rollout_ref = route
        return f"(CASE WHEN {condition} THEN {write(rollout_ref)} ELSE {write(ref)} END)"

    def route(self, ref: str, relation: str, key: str | None) -> tuple[str, str] | None:
        """(the SQL condition a row goes to the rollout by, the rollout's reference), or None without one.

        Only a bare model name (its prod alias) is routed; a pinned version or another alias is not.
        """
        if not key:
            return None
        parsed = ModelRef.parse(ref)
        share = self.session.rollout_share(parsed.name) if parsed.alias == DEFAULT_ALIAS else None
        if not share:
            return None
        rollout_ref = f"{parsed.name}@{ROLLOUT_ALIAS}"
        if self.session.resolve(rollout_ref) == self.session.resolve(ref):
            return None
        column = (f"{self.sql.identifier(relation)}." if relation else "") + self.sql.identifier(key)
        return f"{self.sql.bucket(column)} < {round(share * BUCKETS / 100)}", rollout_ref

    def _sql_call(self, ref: str, relation: str, output: str, method: str | None) -> str:
        card = self.session.card(ref)
        output = card.check_output(output)
        method = scoring_method(method)
        prefix = f"{self.sql.identifier(relation)}." if relation else ""
        expression, why = self.scoring_choice(ref, output, method, prefix)
        self._log_choice(
            "scoring_method",
            ref,
            f"scores with {'onnxruntime' if expression is None else 'SQL'} on {self.sql.name}: {why}",
            "onnx" if expression is None else "sql",
            why,
        )
        if expression is not None:
            return self.type_checked(ref, prefix, expression)
        expression = self.sql.struct((f.name, prefix + self.sql.identifier(f.name)) for f in card.features)
        if ref == card.name and output == card.default_output:
            return f"{'scorehouse_onnx' if method == 'onnx' else 'predict'}_{card.name}({expression})"
        return f"{GENERIC_FUNCTIONS[output]}({self.sql.literal(ref)}, {expression})"

    def _log_choice(self, name: str, ref: str, text: str, method: str, reason: str | None) -> None:
        """The event `name` (DEBUG) saying how `ref` scores on this engine: '<ref> (<model> version <n>) <text>'."""
        model, version = self.session.resolve(ref)
        event(
            name,
            f"{ref} ({model} version {version}) {text}",
            DEBUG,
            ref=ref,
            model=model,
            version=version,
            method=method,
            reason=reason,
            engine=self.sql.name,
        )

    def type_checked(self, ref: str, prefix: str, expression: str, only: str | None = None) -> str:
        """`expression`, behind the ONNX path's check of the features' column types.

        DuckDB: `scorehouse_check_input` (check_input, a Python function) on typeof(the features' struct);
        both arguments are constants, so DuckDB calls it once while planning and folds it away.
        Spark: typeof of each column against the same patterns, folded by Spark's optimizer; `only` (a
        feature) checks that one alone, for an expression that reads it alone (Spark's checks cost a
        little per row: the table form's steps, which read each feature apart, measured 1.5x slower
        checking every feature at every read).
        """
        card = self.session.card(ref)
        columns = [(f.name, prefix + self.sql.identifier(f.name)) for f in card.features]
        if self.sql.folds_python_calls:
            row_type = self.sql.type_name(self.sql.struct(columns))
            return f"(CASE WHEN scorehouse_check_input({self.sql.literal(ref)}, {row_type}) THEN {expression} END)"
        checks = []
        for feature, (_, column) in zip(card.features, columns):
            if only is not None and feature.name != only:
                continue
            found = self.sql.type_name(column)
            before, after = type_error_parts(self.session.describe(ref), feature)
            message = f"{self.sql.literal(before)} || {found} || {self.sql.literal(after)}"
            checks.append(f"WHEN NOT {self.sql.matches(found, feature.type_pattern)} THEN {self.sql.fail(message)}")
        return f"(CASE {' '.join(checks)} ELSE {expression} END)"
