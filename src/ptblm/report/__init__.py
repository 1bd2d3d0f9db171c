"""From run folders to the report: tables, figures, the gradient analysis, samples, report.tex.

Everything here reads `results/<exp>/<run>/` folders only (plus the data folder and best.pt for the
two analyses that run a model), so it works on a laptop after rsync-ing results back, and on
partial results while jobs still run. Output goes to `results/report/`:

    tables/    summary.{tex,md} and one exp-<name>.{tex,md} per experiment   (tables.py)
    figures/   exp-<name>.{pdf,png,tex}: perplexity vs epoch and vs seconds   (figures.py)
    gradients/ gradients.{pdf,png,json,tex}: dL_T/dh_t against t               (gradients.py)
    samples/   <model>-len<L>.txt, samples.json, appendix.tex                 (samples.py)
    facts.{tex,md,json}                                                       (facts.py)
    report.tex, report.pdf                                                    (document.py)

summary.py reduces a run to its reported numbers and fixes the row order and numbers every output
shares; comparable.py says which runs compare (those on the same corpus files); trained.py finds and
loads the two models the analyses need; latex.py holds the LaTeX.
"""
