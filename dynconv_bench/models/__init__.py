"""Models: the variant interface (variant, layers, conv_spec), the registry, conv sites, conversion of timm
backbones, the per-sample conv strategies and ModelSpec (what builds a cell's model).

Imports only errors; never measures, metrics, execution, reporting or cli.
"""
