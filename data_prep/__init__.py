"""Dataset preparation: CompCars and Stanford Cars → stratified, sharded TFRecords with a manifest.

Stages (each an importable function with a thin ``python -m`` entry point):

* :mod:`data_prep.readers` – any supported on-disk layout → one uniform table (:mod:`data_prep.table`);
* :mod:`data_prep.build` – table → labels, splits, shards and ``manifest.json``;
* :mod:`data_prep.verify` – re-reads shards and checks them against the manifest;
* :mod:`data_prep.synthetic` – writes small learnable datasets in the real layouts.

:mod:`data_prep.schema` owns the record format for both writing and parsing.
"""

__version__ = "0.1.0"
