from django.urls import path

from orders import views

app_name = "orders"
urlpatterns = [
    path("flights/<str:flight_id>/hold", views.start, name="start"),
    path("orders/<str:order_id>/", views.detail, name="detail"),
    path("orders/<str:order_id>/seats", views.toggle_seat, name="seats"),
    path("orders/<str:order_id>/pay", views.pay, name="pay"),
    path("orders/<str:order_id>/cancel", views.cancel, name="cancel"),
]
