"""Evaluation of Glauber diffusion LMs: the likelihood bound (DESIGN §7), an lm-eval adapter, generative perplexity,
MAUVE, iso-compute best-of-N and reporting.

Submodules import their heavy optional dependencies (lm-eval, mauve, matplotlib) lazily, so `import eval.bound`
needs only torch and transformers.
"""
