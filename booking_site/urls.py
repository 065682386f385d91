from django.contrib import admin
from django.urls import include, path

from booking_site.health import healthz
from orders import api

api_patterns = [
    path("flights", api.flight_list, name="flight-list"),
    path("flights/<str:flight_id>", api.flight_detail, name="flight-detail"),
    path("orders", api.order_create, name="order-create"),
    path("orders/<str:order_id>", api.order_resource, name="order"),
    path("orders/<str:order_id>/seats", api.order_seats, name="order-seats"),
    path("orders/<str:order_id>/status", api.order_status, name="order-status"),
    path("orders/<str:order_id>/pay", api.order_pay, name="order-pay"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/", include((api_patterns, "api"))),
    path("admin/", admin.site.urls),
    path("", include("orders.urls")),
    path("", include("flights.urls")),
]

handler404 = "booking_site.errors.not_found"
handler500 = "booking_site.errors.internal_error"
