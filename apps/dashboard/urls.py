from django.urls import path

from apps.dashboard import views

urlpatterns = [
    path("p/<slug:slug>/", views.dashboard, name="dashboard"),
    path("p/<slug:slug>/figures/", views.figures, name="dashboard-figures"),
]
