from django.urls import path

from apps.judging import views

urlpatterns = [
    path("", views.home, name="home"),
    path("p/<slug:slug>/", views.annotate, name="annotate"),
    path("p/<slug:slug>/a/<int:assignment_id>/", views.judge, name="judge"),
    path("p/<slug:slug>/a/<int:assignment_id>/skip/", views.skip, name="skip"),
    path("p/<slug:slug>/undo/", views.undo, name="undo"),
    # Consistency probes (apps.judging.probes): answered and skipped through their own routes.
    path("p/<slug:slug>/r/<int:probe_id>/", views.probe_judge, name="probe_judge"),
    path("p/<slug:slug>/r/<int:probe_id>/skip/", views.probe_pass, name="probe_skip"),
]
