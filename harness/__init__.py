"""The top floor: the simulation and test harness built on every other package.

``fedpa`` (the method) is the ground floor; ``export`` (build time), ``edge`` (what a device runs)
and ``aggregator`` (the server) stand on it. What drives them together lives here: the end-to-end
demo and the umbrella ``fedpa`` command line (:mod:`harness.cli`, :mod:`harness.demo`), the
simulated fleet of devices and its ``fedpa-edge fleet`` command (:mod:`harness.fleet`,
:mod:`harness.edge_cli`), its plots (:mod:`harness.plots`), and the one aggregator launcher with
``free_port()`` that the demo, the tests and the benchmarks share (:mod:`harness.server_process`).
Nothing below imports this package (``tests/test_layers.py`` checks it).
"""
