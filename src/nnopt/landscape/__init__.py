"""Loss landscapes: the surface math (`surface`, torch), the per-study job (`job`, its
resumable parts in `batches`), its settings and tables (`tables`), its figures (`figures`,
`gradients`, `plotting`) and its report section (`section`, handed to the report as a
`SectionFn`). Imports `nnopt.train`, `nnopt.store`, `nnopt.report`, `nnopt.analysis` and
`nnopt.config`.
"""
