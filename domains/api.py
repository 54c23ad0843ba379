"""The domain console's REST API (/api/v1/).

Each view authorises (the operator's own domains only; another operator's is
a 404, like a missing one), checks input types with a serializer, calls one
service and serialises the result. The rules are the services'; their
ValidationError becomes a 400 whose JSON names the field.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from livecenter.lib.api import call_service, valid_data

from . import serializers, services
from .direct import direct_forms
from .models import Domain

DOMAIN_NAME_PARAMETER = OpenApiParameter(
    "domain_name",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The domain name, in ASCII or Unicode (IDNA) form.",
)
domain_resource = extend_schema(parameters=[DOMAIN_NAME_PARAMETER], tags=["domains"])


# A view of one of the operator's domains, named in the path. (A comment:
# the schema would repeat a docstring on every operation.)
class DomainView(APIView):
    def get_domain(self) -> Domain:
        try:
            return services.get_owned_domain(self.request.user, self.kwargs["domain_name"])
        except Domain.DoesNotExist:
            raise NotFound("you have no domain with this name") from None


@extend_schema_view(
    get=extend_schema(
        summary="List your domains",
        parameters=[serializers.DomainFilterSerializer],
        responses=serializers.DomainSerializer(many=True),
    ),
    post=extend_schema(
        summary="Add a domain",
        request=serializers.DomainCreateSerializer,
        responses={201: serializers.DomainSerializer},
    ),
)
@extend_schema(tags=["domains"])
class DomainListView(generics.ListCreateAPIView):
    serializer_class = serializers.DomainSerializer

    def get_queryset(self):
        return (
            services.owned_domains(self.request.user)
            .select_related("streaming_domain", "certificate")
            .prefetch_related("sub_domains")
        )

    def filter_queryset(self, queryset):
        filters = valid_data(serializers.DomainFilterSerializer, self.request.query_params)
        if "domain_type" in filters:
            queryset = queryset.filter(domain_type=filters["domain_type"])
        if "status" in filters:
            # Status is derived (Domain.status); filtering in Python keeps that
            # rule in one place, and an operator has at most a quota of domains.
            return [d for d in queryset if d.status == filters["status"]]
        return queryset

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = valid_data(serializers.DomainCreateSerializer, request.data)
        domain = call_service(services.add_domain, request.user, **data)
        return Response(serializers.DomainSerializer(domain).data, status=status.HTTP_201_CREATED)


@domain_resource
class DomainDetailView(DomainView):
    @extend_schema(summary="Show a domain", responses=serializers.DomainSerializer)
    def get(self, request: Request, domain_name: str) -> Response:
        return Response(serializers.DomainSerializer(self.get_domain()).data)

    @extend_schema(
        summary="Enable or disable a domain; switch RTS and HTML5 auto-transcoding; set SRT latency and passphrase",
        request=serializers.DomainUpdateSerializer,
        responses=serializers.DomainSerializer,
    )
    def patch(self, request: Request, domain_name: str) -> Response:
        domain = self.get_domain()
        data = valid_data(serializers.DomainUpdateSerializer, request.data)
        domain = call_service(services.update_domain, domain, **data)
        return Response(serializers.DomainSerializer(domain).data)

    @extend_schema(summary="Delete a domain", responses={204: None})
    def delete(self, request: Request, domain_name: str) -> Response:
        services.delete_domain(self.get_domain())
        return Response(status=status.HTTP_204_NO_CONTENT)


@domain_resource
class CnameCheckView(DomainView):
    @extend_schema(
        summary="The CNAME record to add, and the last check's result",
        responses=serializers.CnameStateSerializer,
    )
    def get(self, request: Request, domain_name: str) -> Response:
        return Response(serializers.CnameStateSerializer(self.get_domain()).data)

    @extend_schema(
        summary="Resolve the domain's CNAME over DNS now",
        request=None,
        responses=serializers.CnameCheckResultSerializer,
    )
    def post(self, request: Request, domain_name: str) -> Response:
        domain = self.get_domain()
        lookup = services.verify_cname(domain)
        return Response(serializers.CnameCheckResultSerializer({"domain": domain, "lookup": lookup}).data)


@domain_resource
class MappingView(DomainView):
    @extend_schema(summary="Show a domain's association", responses=serializers.MappingSerializer)
    def get(self, request: Request, domain_name: str) -> Response:
        return Response(serializers.MappingSerializer(self.get_domain()).data)

    @extend_schema(
        summary="Associate a streaming domain with an ingest domain, or bind it to a main streaming domain",
        request=serializers.MappingUpdateSerializer,
        responses=serializers.MappingSerializer,
    )
    def put(self, request: Request, domain_name: str) -> Response:
        domain = self.get_domain()
        data = valid_data(serializers.MappingUpdateSerializer, request.data)
        if "ingest_domain" in data:
            domain = call_service(services.associate_ingest, domain, data["ingest_domain"])
        else:
            domain = call_service(services.bind_main_domain, domain, data["main_domain"])
        return Response(serializers.MappingSerializer(domain).data)

    @extend_schema(
        summary="Associate or bind (same as PUT)",
        request=serializers.MappingUpdateSerializer,
        responses=serializers.MappingSerializer,
    )
    def post(self, request: Request, domain_name: str) -> Response:
        return self.put(request, domain_name)

    @extend_schema(summary="Remove the association or binding", responses={204: None})
    def delete(self, request: Request, domain_name: str) -> Response:
        services.clear_mapping(self.get_domain())
        return Response(status=status.HTTP_204_NO_CONTENT)


@domain_resource
class CertificateView(DomainView):
    @extend_schema(
        summary="Show the domain's certificate (never its private key)", responses=serializers.CertificateSerializer
    )
    def get(self, request: Request, domain_name: str) -> Response:
        domain = self.get_domain()
        certificate = getattr(domain, "certificate", None)
        if certificate is None:
            raise NotFound(f"{domain.domain_name} has no certificate")
        return Response(serializers.CertificateSerializer(certificate).data)

    @extend_schema(
        summary="Upload a certificate and its private key (replaces any current one)",
        request=serializers.CertificateUploadSerializer,
        responses=serializers.CertificateSerializer,
    )
    def put(self, request: Request, domain_name: str) -> Response:
        domain = self.get_domain()
        data = valid_data(serializers.CertificateUploadSerializer, request.data)
        certificate = call_service(
            services.upload_certificate, domain, data["certificate"], data["private_key"], name=data["name"]
        )
        return Response(serializers.CertificateSerializer(certificate).data)

    @extend_schema(
        summary="Upload a certificate (same as PUT)",
        request=serializers.CertificateUploadSerializer,
        responses=serializers.CertificateSerializer,
    )
    def post(self, request: Request, domain_name: str) -> Response:
        return self.put(request, domain_name)

    @extend_schema(summary="Remove the domain's certificate", responses={204: None})
    def delete(self, request: Request, domain_name: str) -> Response:
        services.delete_certificate(self.get_domain())
        return Response(status=status.HTTP_204_NO_CONTENT)


@domain_resource
class UrlSigningView(DomainView):
    @extend_schema(summary="Show URL signing (keys masked)", responses=serializers.UrlSigningSerializer)
    def get(self, request: Request, domain_name: str) -> Response:
        return Response(serializers.UrlSigningSerializer(self.get_domain()).data)

    @extend_schema(
        summary="Change URL signing; a key left out keeps its value",
        request=serializers.UrlSigningUpdateSerializer,
        responses=serializers.UrlSigningSerializer,
    )
    def patch(self, request: Request, domain_name: str) -> Response:
        domain = self.get_domain()
        data = valid_data(serializers.UrlSigningUpdateSerializer, request.data)
        domain = call_service(services.configure_url_signing, domain, **data)
        return Response(serializers.UrlSigningSerializer(domain).data)

    @extend_schema(
        summary="Change URL signing (same as PATCH: keys are never returned, so a client cannot send them back)",
        request=serializers.UrlSigningUpdateSerializer,
        responses=serializers.UrlSigningSerializer,
    )
    def put(self, request: Request, domain_name: str) -> Response:
        return self.patch(request, domain_name)


@domain_resource
class AccessControlView(DomainView):
    @extend_schema(summary="Show the domain's IP and Referer lists", responses=serializers.AccessControlSerializer)
    def get(self, request: Request, domain_name: str) -> Response:
        return Response(serializers.AccessControlSerializer(self.get_domain()).data)

    @extend_schema(
        summary="Change the IP and Referer lists (each off, an allow list or a deny list); a field left out keeps"
        " its value",
        request=serializers.AccessControlUpdateSerializer,
        responses=serializers.AccessControlSerializer,
    )
    def patch(self, request: Request, domain_name: str) -> Response:
        domain = self.get_domain()
        data = valid_data(serializers.AccessControlUpdateSerializer, request.data)
        domain = call_service(services.configure_access_control, domain, **data)
        return Response(serializers.AccessControlSerializer(domain).data)

    @extend_schema(
        summary="Change the IP and Referer lists (same as PATCH)",
        request=serializers.AccessControlUpdateSerializer,
        responses=serializers.AccessControlSerializer,
    )
    def put(self, request: Request, domain_name: str) -> Response:
        return self.patch(request, domain_name)


@extend_schema(tags=["urls"])
class UrlGeneratorView(APIView):
    """Signed ingest and playback URLs for a stream."""

    def generate(self, data) -> Response:
        fields = valid_data(serializers.UrlRequestSerializer, data)
        urls = call_service(
            services.generate_urls,
            self.request.user,
            fields["domain"],
            fields["app"],
            fields["stream"],
            template=fields.get("template"),
            validity_minutes=fields.get("validity_minutes"),
        )
        forms = direct_forms(services.owned_domains(self.request.user), urls, self.request.get_host())
        return Response(serializers.GeneratedUrlsSerializer(urls, context={"direct": forms}).data)

    @extend_schema(
        summary="Generate signed URLs",
        request=serializers.UrlRequestSerializer,
        responses=serializers.GeneratedUrlsSerializer,
    )
    def post(self, request: Request) -> Response:
        return self.generate(request.data)

    @extend_schema(
        summary="Generate signed URLs (the same, from query parameters)",
        parameters=[serializers.UrlRequestSerializer],
        responses=serializers.GeneratedUrlsSerializer,
    )
    def get(self, request: Request) -> Response:
        params = request.query_params.copy()
        params.pop(api_settings.URL_FORMAT_OVERRIDE, None)  # ?format= picks the renderer
        return self.generate(params)
