"""Helpers shared by the ``aiida-xesml`` commands: the profile and nodes given by pk."""

import click


def load_profile_of(ctx) -> None:
    """Load the ``-p`` profile, else the set-up profile, else the default profile (lazily, as demo does)."""
    from aiida import load_profile
    from aiida.common.exceptions import (
        MissingConfigurationError,
        ProfileConfigurationError,
    )
    from aiida.manage import get_manager

    from aiida_xesml.constants import DEFAULT_PROFILE

    name = ctx.obj.get("profile_name") if ctx.obj else None
    try:
        if name is None:
            loaded = get_manager().get_profile()
            if loaded is not None:
                return
            try:
                load_profile(DEFAULT_PROFILE, allow_switch=True)
                return
            except ProfileConfigurationError:
                name = None  # no set-up profile: the config's default
        load_profile(name, allow_switch=True)
    except (MissingConfigurationError, ProfileConfigurationError) as exc:
        raise click.ClickException(f"cannot load the AiiDA profile {name or '(default)'}: {exc}; "
                                   "run `aiida-xesml setup` or pass -p NAME") from exc


def load_node_of_type(pk: int, cls, what: str):
    """The node ``pk``, which must be an instance of ``cls``; a ClickException otherwise."""
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        node = orm.load_node(pk)
    except (NotExistent, MultipleObjectsError) as exc:
        raise click.ClickException(f"no node with pk {pk}: {what} expected") from exc
    if not isinstance(node, cls):
        raise click.ClickException(f"node {pk} is a {type(node).__name__}, not {what}")
    return node
