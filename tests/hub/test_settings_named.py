"""Every HUB_* setting that the core's and the integrations' code names exists."""

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
# Read from the environment outside the settings module (by the `hub_run` command) or only there.
ENVIRONMENT_ONLY = {
    "HUB_ADMIN_EMAIL",
    "HUB_ADMIN_PASSWORD",
    "HUB_HOST",
    "HUB_PORT",
    "HUB_VAR_DIR",
    "HUB_NUM_PROXIES",
}


def _named() -> dict[str, str]:
    files = [*ROOT.glob("hub/**/*.py"), *ROOT.glob("integrations/*.py")]
    names: dict[str, str] = {}
    for path in files:
        if path.name == "settings.py":
            continue
        for name in re.findall(r"\bHUB_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()):
            names.setdefault(name, str(path.relative_to(ROOT)))
    return names


def test_every_named_setting_exists():
    missing = {
        name: where
        for name, where in _named().items()
        if name not in ENVIRONMENT_ONLY and not hasattr(settings, name)
    }
    assert not missing, f"settings named but not defined in hub/settings.py: {missing}"


def test_the_environment_only_names_are_read_from_the_environment():
    sources = (ROOT / "hub/settings.py").read_text() + (
        ROOT / "hub/management/commands/hub_run.py"
    ).read_text()
    assert {name for name in ENVIRONMENT_ONLY if f'"{name}"' not in sources} == set()
