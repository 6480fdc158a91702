"""Registration: train a spec's pipeline (or take one fitted elsewhere), export it to ONNX, check the export
against the pipeline, read its structure and store the version in the registry.

This is the only part of scorehouse that imports scikit-learn, skl2onnx or scipy; scoring processes (the
DuckDB and Spark adapters, the dbt plugin, `scorehouse sql`, `models`, `show`) never import it.
"""
