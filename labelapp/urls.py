"""URL map: pages, the JSON API, Django's auth and admin."""

from django.contrib import admin
from django.urls import include, path

from labelapp.api import api
from labelapp.views import console, label

label_patterns = (
    [
        path("", label.task, name="task"),
        path("assignments/<int:assignment_id>/rank", label.rank, name="rank"),
        path("assignments/<int:assignment_id>/skip", label.skip, name="skip"),
    ],
    "label",
)

console_patterns = (
    [
        path("", console.dashboard, name="dashboard"),
        path("rounds/new", console.round_new, name="round_new"),
        path("rounds/<int:round_id>/", console.round_detail, name="round"),
        path("rounds/<int:round_id>/live", console.round_live, name="round_live"),
        path("rounds/<int:round_id>/train", console.round_train, name="round_train"),
        path("rounds/<int:round_id>/close", console.round_close, name="round_close"),
        path("rounds/<int:round_id>/gold", console.round_gold, name="round_gold"),
        path("rounds/<int:round_id>/gold-tasks", console.round_gold_tasks, name="round_gold_tasks"),
        path("rounds/<int:round_id>/export/<str:fmt>", console.round_export, name="round_export"),
        path("runs/<int:run_id>/", console.run_detail, name="run"),
        path("runs/<int:run_id>/live", console.run_live, name="run_live"),
        path("runs/<int:run_id>/retry", console.run_retry, name="run_retry"),
        path("runs/<int:run_id>/cancel", console.run_cancel, name="run_cancel"),
        path("policies/", console.policies, name="policies"),
        path("policies/<int:version_id>/current", console.policy_make_current, name="current"),
        path("policies/compare", console.policy_compare, name="compare"),
        path("import", console.import_file, name="import"),
        path("quality", console.quality_overview, name="quality"),
    ],
    "console",
)

urlpatterns = [
    path("", label.home, name="home"),
    path("label/", include(label_patterns)),
    path("console/", include(console_patterns)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
]
