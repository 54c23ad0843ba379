"""The callbacks API (/api/v1/): an ingest domain's callback settings, its
deliveries and a resend. The operator's own domains only; another
operator's is a 404, like a missing one."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from domains import services as domain_services
from domains.models import Domain
from livecenter.lib.api import call_service, valid_data

from . import serializers, services
from .models import Delivery

DOMAIN_NAME = OpenApiParameter(
    "domain_name", OpenApiTypes.STR, OpenApiParameter.PATH, description="The ingest domain, in ASCII or Unicode form."
)


def _owned(request: Request, domain_name: str) -> Domain:
    try:
        return domain_services.get_owned_domain(request.user, domain_name)
    except Domain.DoesNotExist:
        raise NotFound("no such domain") from None


@extend_schema(tags=["callbacks"], parameters=[DOMAIN_NAME])
class CallbackConfigView(APIView):
    @extend_schema(summary="Show a domain's callbacks (secret masked)", responses=serializers.CallbackConfigSerializer)
    def get(self, request: Request, domain_name: str) -> Response:
        config = services.config_of(_owned(request, domain_name))
        return Response(serializers.CallbackConfigSerializer(config).data)

    @extend_schema(
        summary="Change a domain's callbacks; a field left out keeps its value, an empty URL turns it off",
        request=serializers.CallbackConfigUpdateSerializer,
        responses=serializers.CallbackConfigSerializer,
    )
    def patch(self, request: Request, domain_name: str) -> Response:
        domain = _owned(request, domain_name)
        data = valid_data(serializers.CallbackConfigUpdateSerializer, request.data)
        config = call_service(services.configure_callbacks, domain, **data)
        return Response(serializers.CallbackConfigSerializer(config).data)

    @extend_schema(
        summary="Change a domain's callbacks (as PATCH: the secret is never returned, so it cannot be sent back)",
        request=serializers.CallbackConfigUpdateSerializer,
        responses=serializers.CallbackConfigSerializer,
    )
    def put(self, request: Request, domain_name: str) -> Response:
        return self.patch(request, domain_name)


@extend_schema(
    tags=["callbacks"], parameters=[DOMAIN_NAME], summary="A domain's deliveries, newest first, with their attempts"
)
class DeliveryListView(generics.ListAPIView):
    serializer_class = serializers.DeliverySerializer

    def get_queryset(self):
        domain = _owned(self.request, self.kwargs["domain_name"])
        return services.list_deliveries(self.request.user, domain.domain_name).prefetch_related("attempt_log")


@extend_schema(tags=["callbacks"])
class ResendView(APIView):
    @extend_schema(summary="Send a delivery again now", request=None, responses=serializers.DeliverySerializer)
    def post(self, request: Request, delivery_id: int) -> Response:
        try:
            delivery = services.get_delivery(request.user, delivery_id)
        except Delivery.DoesNotExist:
            raise NotFound("no such delivery") from None
        delivery = call_service(services.resend, delivery)
        return Response(serializers.DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
