"""The GNN scorer: metrics, model, ensembles, training and Dask scoring.

* :mod:`~pipeline.scoring.metrics` - AUROC, enrichment factors, BEDROC, regression metrics;
* :mod:`~pipeline.scoring.layers`, :mod:`~pipeline.scoring.model` - the message-passing network;
* :mod:`~pipeline.scoring.ensemble` - K members, mean and spread, ``models/<name>/`` folders;
* :mod:`~pipeline.scoring.assay`, :mod:`~pipeline.scoring.splits`,
  :mod:`~pipeline.scoring.baselines`, :mod:`~pipeline.scoring.train` - training and honest evaluation;
* :mod:`~pipeline.scoring.score` - inference as Dask tasks;
* :mod:`~pipeline.scoring.runtime` - device, threads, allocator settings.

Submodules import PyTorch; import them where needed.
"""
