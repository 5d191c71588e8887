"""Built-in release importers: each module registers its release's pairs, found through the
`dynconv_bench.releases` entry points exactly as a third-party package's would be."""
