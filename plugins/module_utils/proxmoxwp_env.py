# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""Connection settings that a task may leave out: each falls back on one environment variable."""

from ansible.module_utils.basic import env_fallback


def from_environment(variable, **spec):
    """The argument spec of an option whose value is the environment variable `variable` when the task leaves it out.

    For a suboption of a dict option, the dict needs `apply_defaults=True`: without it, a task without the dict never
    reaches the fallbacks."""
    return dict(spec, fallback=(env_fallback, [variable]))


def missing_settings(what, option, group, given, needed):
    """None, or one sentence naming the needed settings of the dict option `option` that neither the task nor the
    environment gave.

    `given` is the option's value, `needed` the needed settings with their environment variables, `group` the action
    group whose module_defaults set the option for a whole play."""
    missing = [name for name in needed if not given.get(name)]
    if not missing:
        return None
    settings = ", ".join(f"{option}.{name}" for name in missing)
    variables = ", ".join(needed[name] for name in missing)
    return (
        f"{what} lacks {settings}: give the {option} option (for a whole play: module_defaults for "
        f"group/proxmoxwp.hosting.{group}) or set {variables}"
    )
