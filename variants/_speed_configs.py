"""The built-in variants in the configurations the fused-kernel checks cover (label, registered name, config).

Kept with the variants (the core names none): the AOT compile report, the roofline table and the GPU check read it.
"""

VARIANTS = (("static-se", "static-se", {}), ("condconv", "condconv", {}), ("dyconv", "dyconv", {}),
            ("odconv-1x", "odconv", {"num_kernels": 1}), ("odconv-4x", "odconv", {"num_kernels": 4}),
            ("kernelwarehouse", "kernelwarehouse", {}), ("dcd", "dcd", {}), ("kerneldna", "kerneldna", {}))
