"""Starting processes for a cell: the memory cap (`limits`), one call in a fresh interpreter under it (`isolate`),
a cell measured in fresh worker processes (`workers`) and a cell trained by N DDP workers through torchrun or
Ray Train (`ddp_launch`).

A child imports the function it runs by module and qualname; that function sits at or below the floor of the
module that names it and of the launcher that imports it (tests/test_import_layers.py checks this).
"""
