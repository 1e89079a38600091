"""Registers the emulator fixtures for this directory, unless the project's
root conftest already did (with pytest_plugins = ["tests.emulators.fixtures"]);
registering the module twice would start every session server twice."""


def pytest_configure(config):
    pm = config.pluginmanager
    if pm.has_plugin("tests.emulators.fixtures") or pm.has_plugin("emulators.fixtures"):
        return
    try:
        pm.import_plugin("tests.emulators.fixtures")
    except ImportError:  # `pytest` run without the repo root on sys.path
        pm.import_plugin("emulators.fixtures")
