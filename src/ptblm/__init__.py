"""ptblm: word-level language models on Penn Treebank as reproducible Slurm batch jobs."""
__version__ = "0.1.0"
