"""The screening report: ``report.html``, its figures and ``top_hits.sdf``.

* :mod:`~pipeline.report.rundata` - read a finished run folder once;
* :mod:`~pipeline.report.labels` - activity labels carried by the library;
* :mod:`~pipeline.report.funnel` - compounds per stage, failures by reason;
* :mod:`~pipeline.report.enrichment` - AUROC / EF1% / BEDROC and curves per score;
* :mod:`~pipeline.report.figures` - the Matplotlib figures;
* :mod:`~pipeline.report.depictions` - 2D depictions as inline SVG;
* :mod:`~pipeline.report.top_hits` - the top hits' 3D poses with scores as SD properties;
* :mod:`~pipeline.report.html` - the self-contained page (inline CSS, JavaScript, images);
* :mod:`~pipeline.report.build` - :func:`build_report`, which puts it all together.
"""

from .build import ReportSummary, build_report
from .top_hits import write_top_hits

__all__ = ["ReportSummary", "build_report", "write_top_hits"]
