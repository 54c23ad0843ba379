"""A domain's callbacks page, mounted at /domains/<domain_name>/callbacks/
(namespace "callbacks"; livecenter/urls.py puts it before the domains' own).

    callbacks:page     /domains/<domain_name>/callbacks/                    GET shows, POST saves
    callbacks:resend   /domains/<domain_name>/callbacks/<id>/resend/        POST
"""

from django.urls import path

from . import views

app_name = "callbacks"

urlpatterns = [
    path("", views.callbacks, name="page"),
    path("<int:delivery_id>/resend/", views.resend, name="resend"),
]
