from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path, reverse_lazy
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotate.health import healthz
from apps.accounts.views import api_token, old_admin_redirect
from apps.batches.api import BatchCancel, BatchCreate, BatchDetail, ComparisonList
from apps.exports.api import Export, Stats
from apps.exports.job_api import (
    ExportJobCancel,
    ExportJobCard,
    ExportJobDetail,
    ExportJobDownload,
    ExportJobs,
)
from apps.generation.api import (
    GenerationCancel,
    GenerationDetail,
    GenerationList,
    GenerationResume,
)
from apps.judges.api import JudgingCancel, JudgingDetail, JudgingList, JudgingResume
from apps.judging.api import (
    AssignmentNext,
    AssignmentSkip,
    JudgmentCreate,
    JudgmentList,
    JudgmentUndo,
    ProbeJudgment,
    ProbeSkip,
)
from apps.projects.api import Me, MemberAdd, ProjectListCreate

api_v1 = [
    path("projects/", ProjectListCreate.as_view(), name="api-projects"),
    path("projects/<slug:slug>/members/", MemberAdd.as_view(), name="api-members"),
    path("projects/<slug:slug>/batches/", BatchCreate.as_view(), name="api-batches"),
    path("projects/<slug:slug>/comparisons/", ComparisonList.as_view(), name="api-comparisons"),
    path("projects/<slug:slug>/judgments/", JudgmentList.as_view(), name="api-judgments"),
    path(
        "projects/<slug:slug>/assignments/next/",
        AssignmentNext.as_view(),
        name="api-assignment-next",
    ),
    path(
        "projects/<slug:slug>/probes/<int:probe_id>/judgment/",
        ProbeJudgment.as_view(),
        name="api-probe-judgment",
    ),
    path(
        "projects/<slug:slug>/probes/<int:probe_id>/skip/",
        ProbeSkip.as_view(),
        name="api-probe-skip",
    ),
    path("projects/<slug:slug>/export/", Export.as_view(), name="api-export"),
    path("projects/<slug:slug>/exports/", ExportJobs.as_view(), name="api-export-jobs"),
    path(
        "projects/<slug:slug>/exports/<int:job_id>/",
        ExportJobDetail.as_view(),
        name="api-export-job",
    ),
    path(
        "projects/<slug:slug>/exports/<int:job_id>/download/",
        ExportJobDownload.as_view(),
        name="api-export-job-download",
    ),
    path(
        "projects/<slug:slug>/exports/<int:job_id>/card/",
        ExportJobCard.as_view(),
        name="api-export-job-card",
    ),
    path(
        "projects/<slug:slug>/exports/<int:job_id>/cancel/",
        ExportJobCancel.as_view(),
        name="api-export-job-cancel",
    ),
    path("projects/<slug:slug>/stats/", Stats.as_view(), name="api-stats"),
    path("projects/<slug:slug>/judgments/undo/", JudgmentUndo.as_view(), name="api-judgment-undo"),
    path("batches/<int:batch_id>/", BatchDetail.as_view(), name="api-batch"),
    path("batches/<int:batch_id>/cancel/", BatchCancel.as_view(), name="api-batch-cancel"),
    path("batches/<int:batch_id>/generations/", GenerationList.as_view(), name="api-generations"),
    path("generations/<int:generation_id>/", GenerationDetail.as_view(), name="api-generation"),
    path("batches/<int:batch_id>/judgings/", JudgingList.as_view(), name="api-judgings"),
    path("judgings/<int:judging_id>/", JudgingDetail.as_view(), name="api-judging"),
    path("judgings/<int:judging_id>/cancel/", JudgingCancel.as_view(), name="api-judging-cancel"),
    path("judgings/<int:judging_id>/resume/", JudgingResume.as_view(), name="api-judging-resume"),
    path(
        "generations/<int:generation_id>/cancel/",
        GenerationCancel.as_view(),
        name="api-generation-cancel",
    ),
    path(
        "generations/<int:generation_id>/resume/",
        GenerationResume.as_view(),
        name="api-generation-resume",
    ),
    path(
        "assignments/<int:assignment_id>/judgment/",
        JudgmentCreate.as_view(),
        name="api-judgment",
    ),
    path("assignments/<int:assignment_id>/skip/", AssignmentSkip.as_view(), name="api-skip"),
    path("me/", Me.as_view(), name="api-me"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    re_path(r"^admin/projects/annotatoraccount/(?P<rest>.*)$", old_admin_redirect),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file: the page keeps a strict CSP.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include(api_v1)),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/api-token/", api_token, name="api-token"),
    path("lead/", include("apps.dashboard.urls")),
    # The one-time link a lead hands to a new annotator (apps.accounts.services).
    path(
        "accounts/set-password/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="registration/password_set.html",
            success_url=reverse_lazy("password-set-done"),
        ),
        name="password-set",
    ),
    path(
        "accounts/set-password/done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="registration/password_set_done.html"
        ),
        name="password-set-done",
    ),
    path("", include("apps.judging.urls")),
]
