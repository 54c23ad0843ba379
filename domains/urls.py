"""Console pages for domains, mounted at /domains/ (namespace "domains").

    domains:list                /domains/
    domains:add                 /domains/add/
    domains:detail              /domains/<domain_name>/
    domains:enable              /domains/<domain_name>/enable/            POST
    domains:disable             /domains/<domain_name>/disable/           POST
    domains:delete              /domains/<domain_name>/delete/            GET confirms, POST deletes
    domains:cname               /domains/<domain_name>/cname/
    domains:cname-verify        /domains/<domain_name>/cname/verify/      POST
    domains:local               /domains/<domain_name>/cname/local/       POST (local=on|off: a local or test domain)
    domains:mapping             /domains/<domain_name>/mapping/
    domains:mapping-associate   /domains/<domain_name>/mapping/associate/ POST
    domains:mapping-bind        /domains/<domain_name>/mapping/bind/      POST
    domains:mapping-clear       /domains/<domain_name>/mapping/clear/     POST
    domains:certificate         /domains/<domain_name>/certificate/       GET shows, POST uploads
    domains:certificate-delete  /domains/<domain_name>/certificate/delete/ POST
    domains:https               /domains/<domain_name>/certificate/https/  POST (HTTPS switches)
    domains:rts                 /domains/<domain_name>/rts/
    domains:srt                 /domains/<domain_name>/srt/
    domains:hls-encryption      /domains/<domain_name>/hls-encryption/
    domains:url-signing         /domains/<domain_name>/url-signing/
    domains:access-control      /domains/<domain_name>/access-control/

`domain_name` is either form of the name (ASCII A-labels or Unicode); links
use the stored ASCII form. Views look it up among the operator's own domains
only, so anyone else's domain is a 404.
"""

from django.urls import path

from . import views

app_name = "domains"

urlpatterns = [
    path("", views.domain_list, name="list"),
    path("add/", views.domain_add, name="add"),
    path("<str:domain_name>/", views.domain_detail, name="detail"),
    path("<str:domain_name>/enable/", views.domain_enable, name="enable"),
    path("<str:domain_name>/disable/", views.domain_disable, name="disable"),
    path("<str:domain_name>/delete/", views.domain_delete, name="delete"),
    path("<str:domain_name>/cname/", views.cname_guide, name="cname"),
    path("<str:domain_name>/cname/verify/", views.cname_verify, name="cname-verify"),
    path("<str:domain_name>/cname/local/", views.domain_local, name="local"),
    path("<str:domain_name>/mapping/", views.mapping, name="mapping"),
    path("<str:domain_name>/mapping/associate/", views.mapping_associate, name="mapping-associate"),
    path("<str:domain_name>/mapping/bind/", views.mapping_bind, name="mapping-bind"),
    path("<str:domain_name>/mapping/clear/", views.mapping_clear, name="mapping-clear"),
    path("<str:domain_name>/certificate/", views.certificate, name="certificate"),
    path("<str:domain_name>/certificate/delete/", views.certificate_delete, name="certificate-delete"),
    path("<str:domain_name>/certificate/https/", views.https_settings, name="https"),
    path("<str:domain_name>/rts/", views.rts, name="rts"),
    path("<str:domain_name>/srt/", views.srt, name="srt"),
    path("<str:domain_name>/hls-encryption/", views.hls_encryption, name="hls-encryption"),
    path("<str:domain_name>/url-signing/", views.url_signing, name="url-signing"),
    path("<str:domain_name>/access-control/", views.access_control, name="access-control"),
]
