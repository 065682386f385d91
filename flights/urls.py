from django.urls import path

from flights import views

app_name = "flights"
urlpatterns = [
    path("", views.flight_list, name="list"),
    path("flights/<flight_id:flight_id>/", views.flight_detail, name="detail"),
]
