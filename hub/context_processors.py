from . import selectors


def navigation(request):
    """The signed-in user's workspaces, for the sidebar's workspace switcher."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"nav_workspaces": selectors.workspaces_for_user(user=user)}
