"""Stand-ins for modules that scoring scripts written for Azure ML import from AML's own
runtime. A worker puts this folder last on `sys.path`, so the real module wins where it
is installed."""
