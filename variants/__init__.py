"""Built-in variants of dynconv-bench, registered through the `dynconv_bench.variants` entry points."""
