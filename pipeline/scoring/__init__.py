"""The GNN scorer: metrics, model, ensembles, training and Dask scoring.

* :mod:`~pipeline.scoring.metrics` - AUROC, enrichment factors, BEDROC, regression metrics;
* :mod:`~pipeline.scoring.layers`, :mod:`~pipeline.scoring.model` - the message-passing network;
* :mod:`~pipeline.scoring.ensemble` - K members, mean and spread, ``models/<name>/`` folders;
* :mod:`~pipeline.scoring.assay`, :mod:`~pipeline.scoring.splits`,
  :mod:`~pipeline.scoring.baselines`, :mod:`~pipeline.scoring.train` - training and honest evaluation;
* :mod:`~pipeline.scoring.pair_layers`, :mod:`~pipeline.scoring.pair_model`,
  :mod:`~pipeline.scoring.pair_train`, :mod:`~pipeline.scoring.pair_folder`,
  :mod:`~pipeline.scoring.pair_finetune` - the pair-term scorer (Vina-shaped atom-pair energies),
  its training, its ``models/<name>/`` folders, and training or fine-tuning it on an assay table;
* :mod:`~pipeline.scoring.score` - inference as Dask tasks (either kind of model);
* :mod:`~pipeline.scoring.runtime` - device, threads, allocator settings.

Submodules import PyTorch; import them where needed.
"""
