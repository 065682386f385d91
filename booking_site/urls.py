from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import TemplateView

from booking_site import codec, openapi
from booking_site.health import livez, readyz
from common import inputs
from common.api import unknown_endpoint
from flights import api as flights_api
from orders import admin as orders_admin
from orders import api, streams

# Before any URLconf below uses them: a malformed id in a path matches no URL.
inputs.register_converters()

api_patterns = [
    path("flights", flights_api.flight_list, name="flight-list"),
    path("flights/<flight_id:flight_id>", flights_api.flight_detail, name="flight-detail"),
    # Event streams (server-sent events), served by the streams' ASGI process: orders/streams.py.
    path("flights/<flight_id:flight_id>/events", streams.flight_events, name="flight-events"),
    path("orders", api.order_create, name="order-create"),
    path("orders/<order_ref:order_id>", api.order_resource, name="order"),
    path("orders/<order_ref:order_id>/seats", api.order_seats, name="order-seats"),
    path("orders/<order_ref:order_id>/status", api.order_status, name="order-status"),
    path("orders/<order_ref:order_id>/pay", api.order_pay, name="order-pay"),
    path("orders/<order_ref:order_id>/events", streams.order_events, name="order-events"),
    path("openapi.json", openapi.document_json, name="openapi"),
]

urlpatterns = [
    # Served by booking_site.health.ProbeMiddleware before host validation; named here for reverse().
    path("livez", livez, name="livez"),
    path("readyz", readyz, name="readyz"),
    path("healthz", readyz, name="healthz"),
    path("api/", include((api_patterns, "api"))),
    # Anything else under /api/ (a trailing slash, an id that cannot be one, a typo): JSON 404,
    # also under DEBUG, and never a slash-appending redirect.
    re_path(r"^api(?:/[\s\S]*)?$", unknown_endpoint),
    path("api-docs/", TemplateView.as_view(template_name="api_docs.html"), name="api-docs"),
    # The Temporal UI's codec endpoint (staff only): docs/OPERATIONS.md, "Reading encrypted payloads".
    path("codec/decode", codec.decode, name="codec-decode"),
    path("codec/encode", codec.encode, name="codec-encode"),
    path("admin/overview/", admin.site.admin_view(orders_admin.overview), name="admin-overview"),
    path("admin/", admin.site.urls),
    path("", include("orders.urls")),
    path("", include("flights.urls")),
]

handler400 = "booking_site.errors.bad_request"
handler404 = "booking_site.errors.not_found"
handler500 = "booking_site.errors.internal_error"
