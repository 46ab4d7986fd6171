"""Printing a benchmark module's summary (ratios of best times) after its tests have run."""


def print_summary(request, title, lines):
    """Write ``lines`` under ``title`` to the terminal, past pytest's output capture (a module
    fixture's teardown runs while capture is on); nothing when there are no lines."""
    if not lines:
        return
    plugins = request.config.pluginmanager
    with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
        reporter = plugins.get_plugin("terminalreporter")
        reporter.write_sep("-", title)
        for line in lines:
            reporter.write_line(line)
