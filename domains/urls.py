app_name = "domains"
urlpatterns: list = []
