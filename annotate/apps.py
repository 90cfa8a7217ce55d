from django.contrib.admin.apps import AdminConfig


class AnnotateAdminConfig(AdminConfig):
    default_site = "annotate.admin_site.AnnotateAdminSite"
