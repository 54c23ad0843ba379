"""Console pages of the media nodes, mounted at /nodes/ (namespace "nodes").

nodes:list   /nodes/   every node: role, region, health, load, what it carries
"""

from django.urls import path

from . import views

app_name = "nodes"

urlpatterns = [path("", views.node_list, name="list")]
