from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from . import throttle
from .models import ApiToken


class TokenCredentialsSerializer(serializers.Serializer):
    username = serializers.CharField(
        error_messages={"required": "enter your user name", "blank": "enter your user name"}
    )
    password = serializers.CharField(
        trim_whitespace=False,
        write_only=True,
        style={"input_type": "password"},
        error_messages={"required": "enter your password", "blank": "enter your password"},
    )


class LoginThrottledError(exceptions.APIException):
    """429 with the throttle's reason; DRF's handler sends `wait` as Retry-After."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "throttled"

    def __init__(self, refusal: throttle.LoginThrottled):
        super().__init__(detail=str(refusal))
        self.wait = refusal.retry_after_seconds


class TokenView(APIView):
    """Trade a user name and password for a new API token. The key is shown
    in this answer only (it is stored hashed); it replaces the user's
    previous key. Throttled like the login page: 429 with Retry-After."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Make an API token",
        request=TokenCredentialsSerializer,
        responses={
            201: inline_serializer(
                "ApiTokenCreated",
                {
                    "token": serializers.CharField(help_text="Shown once; send it as `Authorization: Token <token>`."),
                    "created_at": serializers.DateTimeField(),
                },
            ),
            400: OpenApiResponse(description="User name or password wrong, or missing"),
            429: OpenApiResponse(description="Too many failed logins for this account or from this address"),
        },
        auth=[],
    )
    def post(self, request):
        body = TokenCredentialsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        username, password = body.validated_data["username"], body.validated_data["password"]
        try:
            attempt = throttle.begin_login(username, throttle.client_address(request))
        except throttle.LoginThrottled as exc:
            raise LoginThrottledError(exc) from None
        user = authenticate(request, username=username, password=password)
        if user is None:
            raise exceptions.ValidationError({"detail": "user name or password is wrong; both are case-sensitive"})
        throttle.login_succeeded(attempt)
        token, key = ApiToken.issue(user)
        return Response({"token": key, "created_at": token.created_at}, status=status.HTTP_201_CREATED)
