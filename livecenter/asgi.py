"""ASGI entry point: HTTP for the console and API, WebSockets for Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livecenter.settings")

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from livecenter.media.redact import redact_handlers_of  # noqa: E402
from livecenter.routing import websocket_urlpatterns  # noqa: E402

# A server that configured its own logging before loading this module
# (uvicorn run on its own) logs request lines without their auth_key too.
redact_handlers_of("uvicorn.access", "uvicorn.error")

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
