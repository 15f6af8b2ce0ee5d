"""URL map: pages, the JSON API, Django's auth and admin."""

from django.contrib import admin
from django.urls import include, path

from labelapp.api import api
from labelapp.views import label

label_patterns = (
    [
        path("", label.task, name="task"),
        path("assignments/<int:assignment_id>/rank", label.rank, name="rank"),
        path("assignments/<int:assignment_id>/skip", label.skip, name="skip"),
    ],
    "label",
)

urlpatterns = [
    path("", label.home, name="home"),
    path("label/", include(label_patterns)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
]
