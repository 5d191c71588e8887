"""Running a call in a fresh process under a memory cap: the cap itself (`limits`), one call in a fresh
interpreter (`isolate`), and a cell measured in fresh worker processes (`workers`).

The child of `isolate` imports the function it runs by module and qualname; that function is always one at or
below the floor of the module that hands it over (tests/test_import_layers.py checks this).
"""
