"""Sudoku and Zebra puzzle benchmarks: generators, solvers, datasets, tokenizer, metrics."""
