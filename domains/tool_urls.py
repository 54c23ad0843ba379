"""Console tools, mounted at /tools/ (namespace "tools").

tools:url-generator   /tools/url-generator/   GET shows the form (?domain= preselects), POST generates
"""

from django.urls import path

from . import views

app_name = "tools"

urlpatterns = [
    path("url-generator/", views.url_generator, name="url-generator"),
]
